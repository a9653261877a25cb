// Cross-attention maps of one generated image: where the UNet attended for each token of the prompt,
// averaged over heads, layers (down and up, at one query resolution) and all steps — the
// AttentionStore of Prompt-to-Prompt's notebooks, run alongside ordinary txt2img.

import type { RgbImage } from '../io/image.ts';
import { imageFromTensor } from '../io/image.ts';
import type { Shape4 } from '../models/vae-runner.ts';
import type { SchedulerName, TimestepSpacing } from '../schedulers/index.ts';
import { compileControlledUNet } from './attention-control.ts';
import { AttentionStore, attentionMapGrid, crossAttentionGrids, tokenAttention } from './attention-store.ts';
import { BatchGenerator, DEFAULTS, type StepProgress, denoise, makeSampler, samplerDefaults, stepCallback } from './generate.ts';
import { addedForEmbeddings } from './sdxl-conditioning.ts';
import type { StableDiffusion } from './stable-diffusion.ts';
import { checkPictureSize } from '../models/size-limits.ts';
import { BREAK_FILL, promptTokens, tokenPosition } from '../tokenizers/prompt-tokens.ts';
import { type PromptSyntaxOptions, encodePromptEmbeddings } from './prompt-embeddings.ts';
import { refuseInpaintingUNet } from './inpaint.ts';

export interface AttentionMapsOptions extends PromptSyntaxOptions {
  prompt: string;
  negativePrompt?: string;
  steps?: number;
  scheduler?: SchedulerName;
  /** Overrides the model's `timestep_spacing`. */
  timestepSpacing?: TimestepSpacing;
  guidance?: number;
  seed?: number;
  width?: number;
  height?: number;
  clipSkip?: number;
  /** Initial noise [1, C, h, w] from N(0, 1). */
  latents?: Float32Array;
  /**
   * How many times smaller than the latents the maps' query grid is; the UNet must have
   * cross-attention layers there. Default: from the layers it has (`attentionMapGrid`: 16×16 for SD
   * at 512 px, as Prompt-to-Prompt shows them; the latents' own size for the default model).
   */
  mapDownscale?: number;
  /** Checked before every UNet step: an aborted signal stops the run with an AbortError. */
  signal?: AbortSignal;
  /** Called after every step (`onStep` is the older name of the same callback). */
  onProgress?: (progress: StepProgress) => void;
  onStep?: (progress: StepProgress) => void;
}

export interface TokenAttention {
  /** The token as text. */
  token: string;
  /** Its position in the padded sequence (BOS at 0; chunk c's BOS at 77·c for long prompts). */
  position: number;
  /** [mapHeight · mapWidth], row-major. */
  map: Float32Array;
}

export interface AttentionMapsResult {
  image: RgbImage;
  latents: Float32Array;
  shape: Shape4;
  seed: number;
  /** The sampler that ran: the one asked for, else the model's own. */
  scheduler: SchedulerName;
  mapHeight: number;
  mapWidth: number;
  /** One per prompt token of every chunk (BOS, EOS and padding left out; the syntax is no token). */
  tokens: TokenAttention[];
}

export async function crossAttentionMaps(sd: StableDiffusion, options: AttentionMapsOptions): Promise<AttentionMapsResult> {
  // Without a size, the one the model was trained for; latents are the image over the VAE's factor f.
  const o = { ...DEFAULTS, ...options, ...samplerDefaults(sd, options), width: options.width ?? sd.defaultSize, height: options.height ?? sd.defaultSize };
  const f = sd.vaeScaleFactor;
  if (o.width % f || o.height % f) throw new Error(`width and height must be multiples of ${f}, got ${o.width}×${o.height}`);
  refuseInpaintingUNet(sd, 'attention maps');
  checkPictureSize(sd.components.unet.config, sd.components.vae.config, { batch: 1, width: o.width, height: o.height, guided: sd.classifierFree(o.guidance) });
  const [h, w] = [o.height / f, o.width / f];
  const [mapHeight, mapWidth] = mapGrid(sd, h, w, options.mapDownscale);
  const shape: Shape4 = [1, sd.latentChannels, h, w];
  const size = shape[1] * h * w;
  if (o.latents && o.latents.length !== size) throw new Error(`initial latents have ${o.latents.length} values; [${shape.join(', ')}] needs ${size}`);
  const rng = new BatchGenerator([o.seed]);
  const noise = o.latents ?? rng.randn(size);

  const { name, scheduler } = makeSampler(sd, o);
  const guided = sd.classifierFree(o.guidance);
  const text = await encodePromptEmbeddings(sd, [o.prompt], guided ? [o.negativePrompt ?? ''] : undefined, o);
  const { cond, uncond, tokens: contextTokens, chunks } = text;
  const added = addedForEmbeddings(sd, text, { width: o.width, height: o.height, guided }, 1);
  const batch = guided ? 2 : 1;
  const store = new AttentionStore({ height: mapHeight, width: mapWidth, rows: [batch - 1, batch] });
  const unet = await compileControlledUNet(sd, [batch, shape[1], h, w], store, contextTokens);
  const latents = await denoise(sd, unet, {
    scheduler,
    timesteps: scheduler.timesteps,
    latents: noise.map((v) => v * scheduler.initNoiseSigma),
    shape,
    cond,
    uncond,
    added,
    guidance: o.guidance,
    rng,
    onOutputs: (_, outputs) => store.accumulate(outputs),
    signal: o.signal,
    onStep: stepCallback(o),
  });

  const decoded = await sd.decodeLatents(latents, shape);
  const tokens = promptTokenMaps(sd, o.prompt, store, 0, { promptSyntax: o.promptSyntax, chunks });
  return { image: imageFromTensor(decoded.data, 0, decoded.shape, '0..1'), latents, shape, seed: o.seed, scheduler: name, mapHeight, mapWidth, tokens };
}

/**
 * One map per token of `prompt` (BOS, EOS and padding left out) from row `row` of a store's
 * average, read in `reading.chunks` chunks as it was encoded.
 */
export function promptTokenMaps(sd: StableDiffusion, prompt: string, store: AttentionStore, row: number, reading: { promptSyntax?: boolean; chunks: number }): TokenAttention[] {
  const tokenizer = sd.components.tokenizer;
  const contextTokens = reading.chunks * tokenizer.modelMaxLength;
  const kept = reading.chunks * (tokenizer.modelMaxLength - 2);
  const average = store.average();
  const queries = store.options.height * store.options.width;
  return promptTokens(tokenizer, prompt, { syntax: reading.promptSyntax })
    .ids.slice(0, kept)
    .flatMap((id, k) => {
      if (id === BREAK_FILL) return [];
      const position = tokenPosition(tokenizer, k);
      return [{ token: tokenizer.decode([id]), position, map: tokenAttention(average, row, position, queries, contextTokens) }];
    });
}

/** The maps' query grid: 1/mapDownscale of the latents if the UNet has cross-attention there, else the one it picks. */
function mapGrid(sd: StableDiffusion, h: number, w: number, mapDownscale?: number): [number, number] {
  const config = sd.components.unet.config;
  if (mapDownscale === undefined) return attentionMapGrid(config, h, w);
  const grids = crossAttentionGrids(config, h, w);
  const wanted = grids.find(([gh, gw]) => gh * mapDownscale === h && gw * mapDownscale === w);
  if (!wanted) {
    const have = grids.map(([gh, gw]) => `${gh}×${gw}`).join(', ');
    throw new Error(`a ${h}×${w} latent has no cross-attention layers at 1/${mapDownscale} of its size (this UNet has them at ${have})`);
  }
  return wanted;
}
