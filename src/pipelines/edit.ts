// Prompt-to-Prompt editing: the source prompt and its edit denoised together from the same noise
// (seeded, given, or a real picture's inversion), the edit's attention tied to the source's by the
// controller, optionally confined to the chosen words' region by local blending. Returns both
// images and the final latents [2, C, h, w] (source, edit).

import type { RgbImage } from '../io/image.ts';
import { imageFromTensor } from '../io/image.ts';
import type { Shape4 } from '../models/vae-runner.ts';
import type { SchedulerName, TimestepSpacing } from '../schedulers/index.ts';
import { PromptToPromptControl, compileControlledUNet } from './attention-control.ts';
import { type TokenAttention, promptTokenMaps } from './attention-maps.ts';
import { AttentionStore, attentionMapGrid } from './attention-store.ts';
import { BatchGenerator, DEFAULTS, type StepProgress, checkStepNoise, denoise, makeSampler, samplerDefaults, stepCallback } from './generate.ts';
import { type InversionProgress, type InvertedImage, type NullTextOptions, invertImage } from './inversion.ts';
import { LocalBlend, type LocalBlendOptions, blendLatents } from './local-blend.ts';
import { type PromptToPromptOptions, type PromptToPromptPlan, type StepRange, asCrossReplace, planPromptToPrompt, promptToPromptFeeds } from './prompt-to-prompt.ts';
import { addedForEmbeddings } from './sdxl-conditioning.ts';
import type { Feeds, StableDiffusion } from './stable-diffusion.ts';
import { checkPictureSize } from '../models/size-limits.ts';
import { encodePromptEmbeddings } from './prompt-embeddings.ts';
import { refuseInpaintingUNet } from './inpaint.ts';
import { carriesReweightsByDefault, carryReweights } from './reweight-carry.ts';

export interface EditOptions extends PromptToPromptOptions {
  /** Confine the edit to where these words are. */
  localBlend?: LocalBlendOptions;
  /** A real picture to edit, described by `source`: inverted first (DDIM, then null-text). */
  image?: RgbImage;
  /** A finished inversion to start from instead (reuse one for several edits). */
  inversion?: InvertedImage;
  /** Null-text inversion settings for `image`; false keeps plain DDIM inversion. */
  nullText?: NullTextOptions | false;
  /** Initial noise from N(0, 1): [1, C, h, w] shared by both prompts, or [2, C, h, w]. */
  latents?: Float32Array;
  /** The noise each sampler step draws, used instead of drawing it: row i is step i's, [1 or 2, C, h, w] like `latents`. */
  stepNoise?: readonly Float32Array[];
  negativePrompt?: string;
  steps?: number;
  /** Default: the model's own; DDIM when editing a real picture (its inversion is DDIM's). */
  scheduler?: SchedulerName;
  /** Overrides the model's `timestep_spacing`. */
  timestepSpacing?: TimestepSpacing;
  guidance?: number;
  eta?: number;
  seed?: number;
  width?: number;
  height?: number;
  clipSkip?: number;
  /** Also record where the edit attended for each token of the target (its heat maps). */
  attentionMaps?: boolean;
  /** Checked before every UNet step and inversion iteration: an aborted signal stops the run with an AbortError. */
  signal?: AbortSignal;
  /** Called after every sampling step (`onStep` is the older name of the same callback). */
  onProgress?: (progress: StepProgress) => void;
  onStep?: (progress: StepProgress) => void;
  onInversionStep?: (progress: InversionProgress) => void;
}

export interface EditResult {
  /** Source, edit. */
  images: [RgbImage, RgbImage];
  /** [2, C, h, w]: source, edit. */
  latents: Float32Array;
  shape: Shape4;
  seed: number;
  /** The sampler that ran. */
  scheduler: SchedulerName;
  plan: PromptToPromptPlan;
  /** Whether the re-weights were carried into the words after them (asked, or the model's nuri.json). */
  reweightCarry: boolean;
  inversion?: InvertedImage;
  /** With `attentionMaps`: the edit's cross-attention per target token, at mapHeight × mapWidth. */
  attention?: { mapHeight: number; mapWidth: number; tokens: TokenAttention[] };
}

/**
 * An edit's own settings as extra fields of a PNG's A1111 parameters ("P2P edit: replace, P2P target:
 * …, P2P reweight: blue=2, …"): what `nuri edit` and the server's edit jobs write beside the sampling.
 */
export function editParameterFields(options: EditOptions, result: Pick<EditResult, 'plan' | 'reweightCarry'>): Record<string, string | number> {
  const range = (r: StepRange) => (typeof r === 'number' ? String(r) : r.join('-'));
  const fields: Record<string, string | number> = { 'P2P edit': result.plan.kind, 'P2P target': result.plan.target };
  if (options.crossReplace !== undefined) {
    const { default: all, words = {} } = asCrossReplace(options.crossReplace);
    fields['P2P cross replace'] = [...(all !== undefined ? [range(all)] : []), ...Object.entries(words).map(([w, f]) => `${w}=${range(f)}`)].join(' ');
  }
  if (options.selfReplace !== undefined) fields['P2P self replace'] = range(options.selfReplace);
  if (options.reweight) fields['P2P reweight'] = Object.entries(options.reweight).map(([w, f]) => `${w}=${f}`).join(' ');
  if (options.reweight && result.reweightCarry) fields['P2P reweight carry'] = 'on';
  if (options.localBlend) fields['P2P local blend'] = options.localBlend.words.join(' ');
  return fields;
}

/** Editing a real picture samples with DDIM unless the edit names a sampler: its inversion is DDIM's. */
export function withPictureSampler<O extends { scheduler?: SchedulerName; image?: unknown; inversion?: unknown }>(options: O): O {
  return options.image || options.inversion ? { ...options, scheduler: options.scheduler ?? 'ddim' } : options;
}

/** Checks an edit against the tokenizer alone (words, token counts, fractions): throws before any work. */
export function checkEdit(sd: StableDiffusion, options: EditOptions): PromptToPromptPlan {
  const plan = planPromptToPrompt(sd.components.tokenizer, options, samplerDefaults(sd, withPictureSampler(options)).steps);
  if (options.localBlend) new LocalBlend(sd.components.tokenizer, [plan.source, plan.target], options.localBlend, plan);
  return plan;
}

export async function edit(sd: StableDiffusion, options: EditOptions): Promise<EditResult> {
  // Without a size, the one the model was trained for; latents are the image over the VAE's factor f.
  const o = { ...DEFAULTS, ...withPictureSampler(options), ...samplerDefaults(sd, withPictureSampler(options)), width: options.width ?? sd.defaultSize, height: options.height ?? sd.defaultSize };
  const f = sd.vaeScaleFactor;
  const fromPicture = o.image ?? o.inversion;
  if (fromPicture && o.scheduler !== 'ddim') throw new Error(`editing a real picture needs the DDIM scheduler (its inversion is DDIM's), not ${o.scheduler}`);
  if (o.image) [o.width, o.height] = [o.image.width, o.image.height];
  if (o.inversion) [o.height, o.width] = [o.inversion.shape[2] * f, o.inversion.shape[3] * f];
  if (o.width % f || o.height % f) throw new Error(`width and height must be multiples of ${f}, got ${o.width}×${o.height}`);
  refuseInpaintingUNet(sd, 'edit');
  checkPictureSize(sd.components.unet.config, sd.components.vae.config, { batch: 2, width: o.width, height: o.height, guided: sd.classifierFree(o.guidance) });
  const plan = checkEdit(sd, o);
  const tokenizer = sd.components.tokenizer;
  const blend = o.localBlend && new LocalBlend(tokenizer, [plan.source, plan.target], o.localBlend, plan);

  const [h, w] = [o.height / f, o.width / f];
  const shape: Shape4 = [2, sd.latentChannels, h, w];
  const item = shape[1] * h * w;
  const rng = new BatchGenerator([o.seed, o.seed]); // both rows draw the same noise, at every step
  let inversion = o.inversion;
  if (o.image && !inversion) {
    inversion = await invertImage(sd, { prompt: plan.source, image: o.image, steps: o.steps, guidance: o.guidance, negativePrompt: o.negativePrompt, clipSkip: o.clipSkip, promptSyntax: o.promptSyntax, maxChunks: o.maxChunks, minChunks: plan.chunks, nullText: o.nullText, signal: o.signal, onStep: o.onInversionStep });
  }
  if (inversion && (inversion.steps !== o.steps || inversion.guidance !== o.guidance)) {
    throw new Error(`the inversion was made for ${inversion.steps} steps at guidance ${inversion.guidance}; edit with the same`);
  }
  let noise: Float32Array;
  if (inversion) noise = twice(inversion.trajectory[inversion.steps]);
  else if (o.latents) {
    if (o.latents.length !== item && o.latents.length !== 2 * item) throw new Error(`initial latents have ${o.latents.length} values; [1 or 2, ${shape.slice(1).join(', ')}] needs ${item} or ${2 * item}`);
    noise = o.latents.length === item ? twice(o.latents) : o.latents;
  } else noise = rng.randn(2 * item);

  const { name, scheduler } = makeSampler(sd, o);
  // One row of step noise, like one row of latents, is shared by both prompts.
  const stepNoise = o.stepNoise?.map((row) => (row.length === item ? twice(row) : row));
  if (stepNoise) checkStepNoise(stepNoise, scheduler.timesteps.length, shape);
  const latents = noise.map((v) => v * scheduler.initNoiseSigma);
  const guided = sd.classifierFree(o.guidance);
  // The negatives are encoded even without guidance: their chunks count in the plan's context length.
  const negative = o.negativePrompt ?? '';
  const text = await encodePromptEmbeddings(sd, [plan.source, plan.target], [negative, negative], o);
  if (text.chunks !== plan.chunks) throw new Error(`edit: the prompts were planned in ${plan.chunks} chunks but encoded in ${text.chunks}`);
  const { cond, tokens } = text;
  const reweightCarry = o.reweightCarry ?? carriesReweightsByDefault(sd);
  if (reweightCarry) await carryReweights(sd, plan, cond.subarray(tokens * sd.contextShape[1]), o, text.pooled?.cond.subarray(sd.pooledWidth));
  const uncond = guided ? text.uncond : undefined;
  const added = addedForEmbeddings(sd, text, { width: o.width, height: o.height, guided }, 2);

  const batch = guided ? 4 : 2;
  const [mapH, mapW] = attentionMapGrid(sd.components.unet.config, h, w); // SD: the reference's 16×16 maps of a 64×64 latent
  const store = blend && new AttentionStore({ height: mapH, width: mapW, rows: [batch - 2, batch], name: 'local_blend_maps' });
  // The edit's own conditional row (the last), after every replacement and re-weighting.
  const mapStore = o.attentionMaps ? new AttentionStore({ height: mapH, width: mapW, rows: [batch - 1, batch], name: 'edit_attention_maps' }) : undefined;
  const observers = [store, mapStore].filter((s) => s !== undefined);
  const control = new PromptToPromptControl({ batch, tokens, observers });
  const unet = await compileControlledUNet(sd, [batch, shape[1], h, w], control, tokens);
  const nullText = guided && inversion ? inversion.uncondEmbeddings : undefined;
  if (nullText && nullText[0]!.length !== tokens * sd.contextShape[1]) {
    throw new Error(`the inversion's null-text embeddings have ${nullText[0]!.length / sd.contextShape[1]} positions; this edit's prompts need ${tokens} (${plan.chunks} chunks): invert again with these prompts`);
  }
  const feeds = (i: number): Feeds => ({ ...promptToPromptFeeds(plan, i), ...(nullText ? { encoder_hidden_states: nullTextContext(nullText[i], cond, [tokens, sd.contextShape[1]]) } : {}) });

  const final = await denoise(sd, unet, {
    scheduler,
    timesteps: scheduler.timesteps,
    latents,
    shape,
    cond,
    uncond,
    added,
    guidance: o.guidance,
    rng,
    eta: o.eta,
    stepNoise,
    feeds,
    onOutputs: observers.length ? (_, outputs) => observers.forEach((o) => o.accumulate(outputs)) : undefined,
    afterStep: blend && store && ((_, x) => blendLatents(x, shape, blend.mask(store.sum, mapH, mapW, h, w))),
    signal: o.signal,
    onStep: stepCallback(o),
  });

  const decoded = await sd.decodeLatents(final, shape);
  const images: [RgbImage, RgbImage] = [imageFromTensor(decoded.data, 0, decoded.shape, '0..1'), imageFromTensor(decoded.data, 1, decoded.shape, '0..1')];
  const attention = mapStore && { mapHeight: mapStore.options.height, mapWidth: mapStore.options.width, tokens: promptTokenMaps(sd, plan.target, mapStore, 0, plan) };
  return { images, latents: final, shape, seed: o.seed, scheduler: name, plan, reweightCarry, inversion, attention };
}

/** [∅_t, ∅_t, source, edit]: the tuned null text stands in for both unconditional rows. */
function nullTextContext(embedding: Float32Array, cond: Float32Array, [tokens, dim]: [number, number]): { data: Float32Array; shape: number[] } {
  const data = new Float32Array(4 * tokens * dim);
  data.set(embedding, 0);
  data.set(embedding, tokens * dim);
  data.set(cond, 2 * tokens * dim);
  return { data, shape: [4, tokens, dim] };
}

function twice(item: Float32Array): Float32Array {
  const out = new Float32Array(2 * item.length);
  out.set(item);
  out.set(item, item.length);
  return out;
}
