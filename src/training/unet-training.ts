// Training the UNet of a latent diffusion model on captioned images (text-to-image fine-tuning or
// training from a fresh UNet): the frozen VAE and text encoder turn each image and caption into
// latents and token states, then the DDPM loss trains every UNet parameter.
//
// The VAE's latent Gaussian is computed once per image (and per mirror image when flipping); each
// step samples z = mean + std·ε from it, as encoding on the fly would, at a fraction of the cost.
// Caption token states are cached per distinct caption for the same reason.

import { type RunOptions, Tensor } from '../engine/index.ts';
import { ShuffledBatches, type BatchOrderState } from '../data/batches.ts';
import { pickCaption } from '../data/caption-variants.ts';
import { type ImageFolderDataset, flipHorizontal } from '../data/folder.ts';
import { imageToTensor } from '../io/image.ts';
import { compileClipText, encodePrompts } from '../models/clip-text.ts';
import type { StableDiffusionComponents } from '../models/load.ts';
import { VaeRunner, scaleLatents } from '../models/vae-runner.ts';
import { vaeDownscale } from '../models/vae.ts';
import { type PredictionType, createScheduler } from '../schedulers/index.ts';
import type { ClipTokenizer } from '../tokenizers/clip.ts';
import { diffusionFeeds, diffusionInputs, diffusionLoss, drawNoising, minSnrWeights } from './diffusion-loss.ts';
import { compileTrainStep } from './train-step.ts';
import type { TrainingTask } from './trainer.ts';

export interface UNetTrainingOptions {
  batch: number;
  /** Probability of training a caption as "" so the model also learns the unconditional prediction (CFG). */
  captionDropout?: number;
  /**
   * Probability of training a caption with its end-of-text states (EOS and the padding, which CLIP's
   * tokenizer fills with more EOS tokens) replaced by the empty prompt's at the same positions.
   * CLIP's causal attention lets each of them sum up the whole caption, and a UNet trained on them
   * reads the caption there, 70-odd times over, rather than from its words — which Prompt-to-Prompt's
   * re-weighting and heat maps act on. With them sometimes uninformative the UNet must read the words.
   */
  paddingDropout?: number;
  /** The optimiser step from which `paddingDropout` applies (default 0: from the start). */
  paddingDropoutFrom?: number;
  flip?: boolean;
  /** Min-SNR-γ loss weighting (γ = 5 in the paper); off when absent. */
  snrGamma?: number;
  run?: RunOptions;
}

type Components = Pick<StableDiffusionComponents, 'unet' | 'vae' | 'textEncoder' | 'tokenizer' | 'schedulerConfig'>;

interface LatentGaussian {
  mean: Float32Array;
  std: Float32Array;
}

/** The VAE posterior of every image (and of its mirror image with `flip`), encoded in chunks. */
async function encodeDataset(vae: VaeRunner, data: ImageFolderDataset, flip: boolean): Promise<LatentGaussian[][]> {
  const r = data.resolution;
  const out: LatentGaussian[][] = data.items.map(() => []);
  const variants = flip ? [false, true] : [false];
  const chunk = 8;
  for (const mirrored of variants) {
    for (let start = 0; start < data.length; start += chunk) {
      const items = data.items.slice(start, start + chunk);
      const pixels = imageToTensor(items.map((i) => (mirrored ? flipHorizontal(i.image) : i.image)), '-1..1');
      const enc = await vae.encodeImage(pixels, [items.length, 3, r, r]);
      const size = enc.mean.length / items.length;
      items.forEach((_, k) => out[start + k].push({ mean: enc.mean.slice(k * size, (k + 1) * size), std: enc.std.slice(k * size, (k + 1) * size) }));
    }
  }
  return out;
}

export async function unetTrainingTask(sd: Components, data: ImageFolderDataset, options: UNetTrainingOptions): Promise<TrainingTask> {
  const { unet, vae, textEncoder, tokenizer } = sd;
  const { batch } = options;
  const p = options.captionDropout ?? 0;
  if (!(p >= 0 && p <= 1)) throw new Error(`caption dropout must be a probability in [0, 1], got ${p}`);
  const padP = options.paddingDropout ?? 0;
  if (!(padP >= 0 && padP <= 1)) throw new Error(`padding dropout must be a probability in [0, 1], got ${padP}`);
  const padFrom = options.paddingDropoutFrom ?? 0;
  const f = vaeDownscale(vae.config);
  const unetMultiple = 2 ** (unet.config.block_out_channels.length - 1);
  if (data.resolution % (f * unetMultiple)) throw new Error(`UNet training resolution must be a multiple of ${f * unetMultiple}, got ${data.resolution}`);
  const h = data.resolution / f;
  const c = unet.config.in_channels;
  const latentShape = [batch, c, h, h] as const;
  const latentSize = c * h * h;

  const scheduler = createScheduler('ddpm', sd.schedulerConfig);
  const predictionType = scheduler.config.predictionType as PredictionType;
  const alphasCumprod = scheduler.alphasCumprod;
  const tokens = tokenizer.modelMaxLength;
  const width = textEncoder.config.hidden_size;

  const inputs = diffusionInputs(batch, [c, h, h]);
  const context = Tensor.input('encoder_hidden_states', [batch, tokens, width]);
  const gamma = options.snrGamma;
  const lossWeight = gamma === undefined ? undefined : Tensor.input('loss_weight', [batch]);
  const { loss } = diffusionLoss(unet, inputs, context, predictionType, {}, lossWeight);
  const graphInputs = [...Object.values(inputs), context, ...(lossWeight ? [lossWeight] : [])];
  const step = await compileTrainStep({ inputs: graphInputs, loss, params: unet.parameters(), run: options.run });

  const posteriors = await encodeDataset(new VaeRunner(vae, options.run), data, options.flip ?? false);
  const states = new Map<string, Float32Array>();
  // One text-encoder session for the run: captions not seen yet keep arriving batch after batch.
  const textGraph = compileClipText(textEncoder, { length: tokens, run: options.run });
  const encode = async (captions: string[]): Promise<Float32Array> => {
    const missing = [...new Set(captions.filter((t) => !states.has(t)))];
    if (missing.length) {
      const out = await encodePrompts(textEncoder, tokenizer, missing, { graph: await textGraph });
      missing.forEach((t, i) => states.set(t, out.data.slice(i * tokens * width, (i + 1) * tokens * width)));
    }
    const all = new Float32Array(captions.length * tokens * width);
    captions.forEach((t, i) => all.set(states.get(t)!, i * tokens * width));
    return all;
  };

  const order = new ShuffledBatches(data.length, batch);
  return {
    step,
    async nextBatch(rng, stepIndex) {
      // Every draw happens before the first await, in a fixed order: the run replays exactly.
      const indices = order.next(rng);
      const mirrored = indices.map(() => (options.flip ? rng.rand(1)[0] < 0.5 : false));
      // Items with caption variants (the emoji set) train with one drawn at random.
      const captions = indices.map((i) => (p > 0 && rng.rand(1)[0] < p ? '' : pickCaption(data.items[i], rng)));
      const padding = padP > 0 && stepIndex >= padFrom ? captions.map(() => rng.rand(1)[0] < padP) : [];
      const eps = rng.randn(batch * latentSize);
      const { timesteps, noise } = drawNoising(rng, batch, latentSize, alphasCumprod.length);

      const z = new Float32Array(batch * latentSize);
      indices.forEach((item, b) => {
        const { mean, std } = posteriors[item][mirrored[b] ? 1 : 0];
        for (let i = 0; i < latentSize; i++) z[b * latentSize + i] = mean[i] + std[i] * eps[b * latentSize + i];
      });
      const latents = scaleLatents(z, latentShape, vae.config);
      const hidden = await encode(captions);
      if (padding.includes(true)) emptyEndOfText(tokenizer, hidden, captions.map((c, i) => (padding[i] ? c : undefined)), await encode(['']));
      return {
        ...diffusionFeeds(alphasCumprod, latents, latentShape, noise, timesteps),
        encoder_hidden_states: { data: hidden, shape: [batch, tokens, width] },
        ...(gamma === undefined ? {} : { loss_weight: { data: minSnrWeights(alphasCumprod, timesteps, gamma, predictionType), shape: [batch] } }),
      };
    },
    dataState: () => order.state(),
    loadDataState: (s) => order.loadState(s as BatchOrderState),
  };
}

/**
 * Overwrites, in token states [B, 77, C], the end-of-text states (EOS and the padding after it) of
 * each caption given with the empty prompt's at the same positions (`empty`: its [77, C] states);
 * BOS and the caption's own tokens stay. Captions given as undefined keep all their states.
 */
export function emptyEndOfText(tokenizer: ClipTokenizer, states: Float32Array, captions: readonly (string | undefined)[], empty: Float32Array): void {
  const row = empty.length;
  const width = row / tokenizer.modelMaxLength;
  captions.forEach((caption, i) => {
    if (caption === undefined) return;
    // EOS follows BOS and the caption's tokens (truncated as the tokenizer does).
    const from = Math.min(tokenizer.modelMaxLength - 1, tokenizer.encode(caption).length + 1) * width;
    states.set(empty.subarray(from), i * row + from);
  });
}
