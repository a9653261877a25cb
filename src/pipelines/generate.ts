// txt2img and img2img: classifier-free guided denoising from seeded noise (or from a noised
// encoding of an init image), then VAE decoding. The denoising loop is shared with editing.

import { throwIfAborted } from '../engine/abort.ts';
import { assertFinite } from '../engine/finite.ts';
import { Generator, type RandomSource } from '../engine/random.ts';
import type { RgbImage } from '../io/image.ts';
import { imageFromTensor, imageToTensor } from '../io/image.ts';
import { type PreviewImage, latentPreview } from '../models/latent-preview.ts';
import { checkPictureSize } from '../models/size-limits.ts';
import type { Shape4 } from '../models/vae-runner.ts';
import { type SchedulerName, type Scheduler, type TimestepSpacing, createScheduler, defaultSchedulerFor, img2imgTimesteps } from '../schedulers/index.ts';
import { type ControlNetUnit, type ControlRun, prepareControl } from './controlnet.ts';
import { applyGuidance } from './guidance.ts';
import { type PromptSyntaxOptions, encodePromptEmbeddings } from './prompt-embeddings.ts';
import { type SizeConditioningOptions, checkSizeConditioning, encodeSdxlConditioning } from './sdxl-conditioning.ts';
import { type InpaintOptions, type InpaintRun, appendChannels, prepareInpaint, refuseInpaintingUNet } from './inpaint.ts';
import { cropForOnlyMasked } from './inpaint-only-masked.ts';
import { type Feeds, StableDiffusion } from './stable-diffusion.ts';
import type { CompiledGraph } from '../engine/session.ts';

export interface StepProgress {
  /** 1-based step number and the number of steps. */
  step: number;
  total: number;
  timestep: number;
  latents: Float32Array;
  /** The current estimate of the clean latents. */
  predictedClean: Float32Array;
  shape: Shape4;
  /** A cheap preview of the predicted clean image (linear latent→RGB, latent resolution). */
  preview: () => PreviewImage[];
  /**
   * The predicted clean image decoded by the pipeline's tiny VAE (TAESD) at the picture's size
   * when it has one, else `preview()`. Await it in the callback: the loop waits for the callback.
   */
  decodePreview: () => Promise<PreviewImage[]>;
}

/** A step callback; a promise it returns is awaited before the next step. */
export type StepCallback<P = StepProgress> = (progress: P) => unknown;

export interface GenerateOptions extends PromptSyntaxOptions, SizeConditioningOptions {
  /** One prompt per image. */
  prompts: string[];
  /** One negative prompt for all images; none means the empty prompt (SDXL with force_zeros_for_empty_prompt: zero embeddings). */
  negativePrompt?: string;
  /** Default: the sampler's (samplerDefaults: 4 for LCM, else 30). */
  steps?: number;
  /** The sampler; by default the model's own (see defaultSchedulerFor). */
  scheduler?: SchedulerName;
  /** Overrides the model's `timestep_spacing` ("trailing" for SD-Turbo's few steps). */
  timestepSpacing?: TimestepSpacing;
  /** Default: samplerDefaults (8.5 for an LCM-distilled UNet, 1 for LCM-LoRA, else 7.5). */
  guidance?: number;
  /** DDIM's η (0: deterministic). */
  eta?: number;
  /** Image i draws its noise from seed + i. */
  seed?: number;
  /**
   * The noise each sampler step draws, used instead of drawing it: row i is step i's, [B, C, H/f, W/f]
   * from N(0, 1) (steps that draw none ignore theirs). With `latents`, reproduces a recorded
   * stochastic run (Euler a, LCM, DDPM, DDIM with η) exactly.
   */
  stepNoise?: readonly Float32Array[];
  width?: number;
  height?: number;
  /** Initial latents [B, C, H/f, W/f] from N(0, 1) (f: the VAE's downscale, 8 for SD); scaled by the scheduler's initial sigma here. */
  latents?: Float32Array;
  /** img2img: the picture to start from (resized to width × height) and how much to change it. */
  initImage?: RgbImage;
  /** (0, 1]: default 0.75, or 1 when inpainting (diffusers' defaults). */
  strength?: number;
  /** Inpainting `initImage`: where to repaint (see InpaintOptions); needed by an inpainting UNet. */
  inpaint?: InpaintOptions;
  /**
   * Inpainting from given `latents`: start from latents · σ_init even at strength < 1, as diffusers'
   * inpainting pipeline does when passed latents (the picture is then not noised in). Without it,
   * `latents` are the noise the picture is noised with, as in img2img.
   */
  latentsAsStart?: boolean;
  clipSkip?: number;
  /** ControlNets; several sum their residuals. Their control images must be width × height. */
  controlNets?: ControlNetUnit[];
  /** Checked before every UNet step: an aborted signal stops the run with an AbortError. */
  signal?: AbortSignal;
  /** Called after every step (`onStep` is the older name of the same callback); a promise it returns is awaited. */
  onProgress?: StepCallback;
  onStep?: StepCallback;
}

export interface GenerateResult {
  images: RgbImage[];
  /** Final latents, [B, C, H/f, W/f], what diffusers returns with output_type="latent". */
  latents: Float32Array;
  shape: Shape4;
  seeds: number[];
  /** The sampler that ran (the model's own when none was named). */
  scheduler: SchedulerName;
  /** Options that had no effect, said in words (e.g. a negative prompt without classifier-free guidance). */
  warnings: string[];
}

/** A random source drawing each batch item's share from its own seeded generator. */
export class BatchGenerator implements RandomSource {
  readonly generators: Generator[];

  constructor(readonly seeds: readonly number[]) {
    this.generators = seeds.map((s) => new Generator(s));
  }

  private split(n: number, draw: (g: Generator, k: number) => Float32Array): Float32Array {
    const b = this.generators.length;
    if (n % b) throw new Error(`cannot split ${n} random values over a batch of ${b}`);
    const out = new Float32Array(n);
    this.generators.forEach((g, i) => out.set(draw(g, n / b), (i * n) / b));
    return out;
  }

  randn(n: number): Float32Array {
    return this.split(n, (g, k) => g.randn(k));
  }

  rand(n: number): Float32Array {
    return this.split(n, (g, k) => g.rand(k));
  }

  randint(high: number): number {
    return this.generators[0].randint(high);
  }
}

/** The sampler has no default here: a run without one takes the model's own (makeSampler). */
export const DEFAULTS = { steps: 30, guidance: 7.5, seed: 0, width: 512, height: 512, strength: 0.75 };

/**
 * A run's steps and guidance: what it asks, else its sampler's (the one it names, else the model's
 * own). The LCM sampler draws in a few steps: 4, with guidance 8.5 as the input of an LCM-distilled
 * UNet (diffusers' LatentConsistencyModelPipeline) and 1 otherwise (LCM-LoRA: no unconditional
 * pass); any other sampler 30 steps at 7.5. A model folder's own defaults (nuri.json) come before
 * those, except under an LCM-LoRA, whose few steps are the LoRA's, not the model's.
 */
export function samplerDefaults(sd: StableDiffusion, asked: { scheduler?: SchedulerName; steps?: number; guidance?: number }): { steps: number; guidance: number } {
  const lcm = (asked.scheduler ?? defaultSchedulerFor(sd.components.schedulerConfig)) === 'lcm';
  const own = lcm && !sd.embedsGuidance ? undefined : sd.components.defaults;
  const guidance = own?.guidance ?? (sd.embedsGuidance ? 8.5 : lcm ? 1 : DEFAULTS.guidance);
  return { steps: asked.steps ?? own?.steps ?? (lcm ? 4 : DEFAULTS.steps), guidance: asked.guidance ?? guidance };
}

export interface SamplerOptions {
  scheduler?: SchedulerName;
  timestepSpacing?: TimestepSpacing;
  eta?: number;
  steps: number;
}

/** The sampler of a run, its timesteps set: the one named, else the model's own, on the model's schedule. */
export function makeSampler(sd: StableDiffusion, o: SamplerOptions): { name: SchedulerName; scheduler: Scheduler } {
  const config = sd.components.schedulerConfig;
  const name = o.scheduler ?? defaultSchedulerFor(config);
  if (o.eta !== undefined && name !== 'ddim') throw new Error(`eta is DDIM's η; the ${name} sampler has none`);
  if (name === 'lcm' && o.timestepSpacing) throw new Error('LCM takes its timesteps from its distillation grid (original_inference_steps): a timestep spacing does not apply to it');
  const scheduler = createScheduler(name, {
    ...config,
    ...(o.eta !== undefined ? { eta: o.eta } : {}),
    ...(o.timestepSpacing ? { timestep_spacing: o.timestepSpacing } : {}),
  });
  scheduler.setTimesteps(o.steps);
  return { name, scheduler };
}

/** Checks given step noise against the run: a row of the latents' size for every step. */
export function checkStepNoise(stepNoise: readonly Float32Array[], steps: number, shape: Shape4): void {
  const size = shape.reduce((a, b) => a * b, 1);
  if (stepNoise.length < steps) throw new Error(`step noise holds ${stepNoise.length} steps; this run takes ${steps}`);
  stepNoise.slice(0, steps).forEach((row, i) => {
    if (row.length !== size) throw new Error(`step noise of step ${i} has ${row.length} values; [${shape.join(', ')}] needs ${size}`);
    assertFinite(row, `the step noise of step ${i}`);
  });
}

export async function generate(sd: StableDiffusion, options: GenerateOptions): Promise<GenerateResult> {
  if (options.inpaint?.onlyMasked && options.initImage) return generateOnlyMasked(sd, { ...options, inpaint: options.inpaint, initImage: options.initImage });
  // Without a size, the one the model was trained for (the default model is small).
  const o = {
    ...DEFAULTS,
    ...options,
    ...samplerDefaults(sd, options),
    width: options.width ?? sd.defaultSize,
    height: options.height ?? sd.defaultSize,
    strength: options.strength ?? (options.inpaint ? 1 : DEFAULTS.strength),
  };
  const batch = o.prompts.length;
  if (!batch) throw new Error('generate: no prompt');
  if (o.inpaint && !o.initImage) throw new Error('generate: inpainting needs initImage, the picture to repaint');
  if (!o.inpaint) refuseInpaintingUNet(sd, 'generate');
  const f = sd.vaeScaleFactor;
  if (o.width % f || o.height % f) throw new Error(`width and height must be multiples of ${f}, got ${o.width}×${o.height}`);
  // An LCM-distilled UNet takes the guidance as an input: one batch, no negative prompt.
  const classifierFree = sd.classifierFree(o.guidance);
  checkPictureSize(sd.components.unet.config, sd.components.vae.config, { batch, width: o.width, height: o.height, guided: classifierFree });
  checkSizeConditioning(sd, o);
  const shape: Shape4 = [batch, sd.latentChannels, o.height / f, o.width / f];
  const size = shape.reduce((a, b) => a * b, 1);
  const seeds = o.prompts.map((_, i) => o.seed + i);
  const rng = new BatchGenerator(seeds);

  const { name, scheduler } = makeSampler(sd, { scheduler: options.scheduler, timestepSpacing: o.timestepSpacing, eta: o.eta, steps: o.steps });
  let timesteps = scheduler.timesteps;

  let latents: Float32Array;
  if (o.latents && o.latents.length !== size) {
    throw new Error(`initial latents have ${o.latents.length} values; [${shape.join(', ')}] needs ${size}`);
  }
  if (o.latents) assertFinite(o.latents, 'the initial latents');
  const noise = o.latents ?? rng.randn(size);
  let inpaint: InpaintRun | undefined;
  if (o.inpaint) {
    if (!(o.strength > 0 && o.strength <= 1)) throw new Error(`strength must be in (0, 1], got ${o.strength}`);
    const startFromNoise = o.latents !== undefined && o.latentsAsStart === true;
    inpaint = await prepareInpaint(sd, { image: o.initImage!, inpaint: o.inpaint, shape, scheduler, strength: o.strength, noise, startFromNoise, rng });
    ({ latents, timesteps } = inpaint);
  } else if (o.initImage) {
    if (!(o.strength > 0 && o.strength <= 1)) throw new Error(`strength must be in (0, 1], got ${o.strength}`);
    const pixels = imageToTensor(new Array(batch).fill(o.initImage), '-1..1');
    const clean = (await sd.imageToLatents(pixels, [batch, 3, o.height, o.width])).data;
    timesteps = img2imgTimesteps(scheduler, o.strength).timesteps;
    latents = scheduler.addNoise(clean, noise, timesteps[0]);
  } else {
    latents = noise.map((v) => v * scheduler.initNoiseSigma);
  }
  if (o.stepNoise) checkStepNoise(o.stepNoise, timesteps.length, shape);

  const negatives = classifierFree ? new Array<string>(batch).fill(o.negativePrompt ?? '') : undefined;
  const warnings = !classifierFree && o.negativePrompt ? [unusedNegativePrompt(sd, o.guidance)] : [];
  const { cond, uncond, tokens, added } = sd.isSdxl
    ? await encodeSdxlConditioning(sd, { ...o, guided: classifierFree })
    : { ...(await encodePromptEmbeddings(sd, o.prompts, negatives, o)), added: undefined };
  if (sd.releaseSessions) await sd.releaseTextEncoder();
  const guided = uncond !== undefined;
  if (o.controlNets?.length && sd.isSdxl) throw new Error('ControlNet on SDXL models is not supported yet');
  const control = o.controlNets?.length ? await prepareControl(sd, o.controlNets, { unetBatch: guided ? 2 * batch : batch, width: o.width, height: o.height, steps: timesteps.length, tokens }) : undefined;
  const { conditioning, afterStep } = inpaint ?? {};
  latents = await denoise(sd, await sd.unet(tokens), { scheduler, timesteps, latents, shape, cond, uncond, added, guidance: o.guidance, rng, eta: o.eta, stepNoise: o.stepNoise, control, conditioning, afterStep, signal: o.signal, onStep: stepCallback(o) });
  if (sd.releaseSessions) await sd.releaseUNet();

  const decoded = await sd.decodeLatents(latents, shape);
  const images = Array.from({ length: batch }, (_, i) => imageFromTensor(decoded.data, i, decoded.shape, '0..1'));
  return { images: inpaint ? inpaint.overlay(images) : images, latents, shape, seeds, scheduler: name, warnings };
}

/** Why a negative prompt did nothing: only the unconditional half of classifier-free guidance reads it. */
function unusedNegativePrompt(sd: StableDiffusion, guidance: number): string {
  const why = sd.embedsGuidance ? `${sd.name} is LCM-distilled (its UNet takes the guidance scale as an input, with no unconditional pass)` : `guidance ${guidance} ≤ 1 runs no unconditional pass`;
  return `the negative prompt was not used: ${why}`;
}

export interface DenoiseOptions {
  scheduler: Scheduler;
  timesteps: readonly number[];
  latents: Float32Array;
  shape: Shape4;
  /** [B, 77 · chunks, C] conditional and (with classifier-free guidance) unconditional token states. */
  cond: Float32Array;
  uncond?: Float32Array;
  /** SDXL's added conditions (text_embeds, time_ids) of each half, batched like cond / uncond. */
  added?: { cond: Feeds; uncond?: Feeds };
  /** The guidance scale: classifier-free with `uncond`, or the input of an LCM-distilled UNet. */
  guidance: number;
  rng: RandomSource;
  eta?: number;
  /** Row i: the noise step i uses instead of drawing from `rng` (checked by the caller). */
  stepNoise?: readonly Float32Array[];
  /** ControlNets: steps where any acts run `control.unet` with their residuals. */
  control?: ControlRun;
  /** Per-step graph feeds (attention control). */
  feeds?: (stepIndex: number) => Feeds;
  /** Per-step hook on the raw UNet outputs (e.g. captured attention maps). */
  onOutputs?: (stepIndex: number, outputs: Record<string, { data: unknown; shape: readonly number[] }>) => void;
  /** Replaces the latents after each step (e.g. Prompt-to-Prompt's local blend). */
  afterStep?: (stepIndex: number, latents: Float32Array) => Float32Array;
  /** [B, k, h, w] channels appended to the UNet's input after the latents, for both guidance halves (an inpainting UNet's mask and masked-picture latents). */
  conditioning?: Float32Array;
  /** Checked before every UNet step. */
  signal?: AbortSignal;
  onStep?: StepCallback;
}

/** One callback from a caller's `onProgress` and `onStep` (either, both or neither given). */
export function stepCallback<P = StepProgress>(o: { onProgress?: StepCallback<P>; onStep?: StepCallback<P> }): StepCallback<P> | undefined {
  const { onProgress, onStep } = o;
  if (!onProgress || !onStep) return onProgress ?? onStep;
  return async (p) => {
    await onStep(p);
    await onProgress(p);
  };
}

/** The sampling loop: one UNet run per step (uncond and cond batched together), scheduler math in TS. */
export async function denoise(sd: StableDiffusion, unet: CompiledGraph, o: DenoiseOptions): Promise<Float32Array> {
  const [b, c, h, w] = o.shape;
  const guided = sd.classifierFree(o.guidance) && o.uncond !== undefined;
  const context = guided ? concat(o.uncond!, o.cond) : o.cond;
  const latentShape: Shape4 = [guided ? 2 * b : b, c, h, w];
  const extra = o.conditioning ? o.conditioning.length / (b * h * w) : 0;
  const unetShape: Shape4 = [latentShape[0], c + extra, h, w];
  const added = { ...(o.added && (guided ? concatFeeds(o.added.uncond!, o.added.cond) : o.added.cond)), ...sd.guidanceFeeds(o.guidance, latentShape[0]) };
  let latents = o.latents;
  for (let i = 0; i < o.timesteps.length; i++) {
    throwIfAborted(o.signal, 'sampling');
    const t = o.timesteps[i];
    const input = o.scheduler.scaleModelInput(latents, t);
    const sample = guided ? concat(input, input) : input;
    const residuals = await o.control?.residuals(i, sample, latentShape, t, context);
    const unetSample = o.conditioning ? appendChannels([{ data: sample, channels: c }, { data: o.conditioning, channels: extra }], latentShape[0], h * w) : sample;
    const outputs = await sd.predictNoise(residuals ? o.control!.unet : unet, unetSample, unetShape, t, context, { ...added, ...o.feeds?.(i), ...residuals });
    o.onOutputs?.(i, outputs);
    const prediction = outputs.noise_pred.data as Float32Array;
    const eps = guided ? applyGuidance(prediction, o.guidance) : prediction;
    const result = o.scheduler.step(eps, t, latents, { generator: o.rng, ...(o.stepNoise ? { noise: o.stepNoise[i] } : {}), ...(o.eta !== undefined ? { eta: o.eta } : {}) });
    latents = o.afterStep ? o.afterStep(i, result.prevSample) : result.prevSample;
    const clean = result.predOriginalSample;
    await o.onStep?.({
      step: i + 1, total: o.timesteps.length, timestep: t, latents, predictedClean: clean, shape: o.shape,
      preview: () => latentPreview(clean, o.shape),
      decodePreview: () => sd.previewImages(clean, o.shape),
    });
  }
  return latents;
}

/** Each feed of `a` followed by the same feed of `b`, along the batch axis. */
function concatFeeds(a: Feeds, b: Feeds): Feeds {
  return Object.fromEntries(Object.entries(a).map(([name, v]) => [name, { data: concat(v.data, b[name].data), shape: [v.shape[0] + b[name].shape[0], ...v.shape.slice(1)] }]));
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * Inpainting "Only masked": the masked part of the picture is drawn at the run's size and laid back
 * into the picture, which keeps its own size (the latents returned are the drawn part's).
 */
async function generateOnlyMasked(sd: StableDiffusion, options: GenerateOptions & { initImage: RgbImage; inpaint: InpaintOptions }): Promise<GenerateResult> {
  const { onlyMasked, ...inpaint } = options.inpaint;
  const crop = await cropForOnlyMasked(options.initImage, inpaint.mask, {
    width: options.width ?? sd.defaultSize,
    height: options.height ?? sd.defaultSize,
    padding: onlyMasked!.padding,
    blur: inpaint.blur ?? 0,
  });
  const drawn = await generate(sd, { ...options, initImage: crop.image, inpaint: { ...inpaint, mask: crop.mask, blur: 0 } });
  return { ...drawn, images: await crop.paste(drawn.images) };
}
