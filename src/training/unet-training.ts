// Training the UNet of a latent diffusion model on captioned images (text-to-image fine-tuning or
// training from a fresh UNet): the frozen VAE and text encoder turn each image and caption into
// latents and token states, then the DDPM loss trains every UNet parameter.
//
// The VAE's latent Gaussian is computed once per image (and per mirror image when flipping); each
// step samples z = mean + std·ε from it, as encoding on the fly would, at a fraction of the cost.
// Caption token states are cached per distinct caption for the same reason.

import { type CompiledGraph, type Feeds, type RunOptions, Tensor, add, mul } from '../engine/index.ts';
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
import { type GroundingLoss, checkGroundable, groundedTokenWeights, groundingLoss, objectMasks } from './grounding.ts';
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
  /**
   * Probability of training a caption with each word's states computed as if the words before it
   * were not there (`isolatedWordStates`), and its end-of-text states emptied as `paddingDropout`
   * does. CLIP is causal: in "red heart" the state of "heart" carries "red" too, and a UNet that
   * reads the colour there is deaf to Prompt-to-Prompt's re-weighting of "red". With the words'
   * states sometimes independent, each word must carry its own meaning.
   */
  wordIsolation?: number;
  /** The optimiser step from which `wordIsolation` applies (default 0: from the start). */
  wordIsolationFrom?: number;
  flip?: boolean;
  /**
   * Weight of the token-grounding loss (`groundingLoss`, TokenCompose) added to the DDPM loss: each
   * caption word's cross-attention is pulled onto the picture's object (what is not background
   * white). Off when absent or 0.
   */
  grounding?: number;
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
  const isoP = options.wordIsolation ?? 0;
  if (!(isoP >= 0 && isoP <= 1)) throw new Error(`word isolation must be a probability in [0, 1], got ${isoP}`);
  const isoFrom = options.wordIsolationFrom ?? 0;
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
  const groundingWeight = options.grounding ?? 0;
  if (!(groundingWeight >= 0)) throw new Error(`grounding weight must be zero or more, got ${groundingWeight}`);
  if (groundingWeight > 0) checkGroundable(data.items);
  const grounding = groundingWeight > 0 ? groundingLoss(batch, tokens) : undefined;
  const diffusion = diffusionLoss(unet, inputs, context, predictionType, { attentionHook: grounding?.hook }, lossWeight).loss;
  const graphInputs = [...Object.values(inputs), context, ...(lossWeight ? [lossWeight] : [])];
  let loss = diffusion;
  let metrics: Record<string, Tensor> | undefined;
  if (grounding) {
    const groundingTerm = grounding.loss();
    loss = add(diffusion, mul(groundingTerm, groundingWeight));
    metrics = { diffusion, grounding: groundingTerm };
    graphInputs.push(grounding.tokens, ...grounding.masks().map((m) => m.input));
  }
  const step = await compileTrainStep({ inputs: graphInputs, loss, metrics, params: unet.parameters(), run: options.run });
  // Object masks per item and mirror image, at every map size the grounding loss asked for.
  const maskCache = new Map<string, Float32Array[]>();
  const masksOf = (item: number, mirrored: boolean): Float32Array[] => {
    const key = `${item}:${mirrored}`;
    let out = maskCache.get(key);
    if (!out) {
      const image = data.items[item].image;
      maskCache.set(key, (out = objectMasks(mirrored ? flipHorizontal(image) : image, grounding!.masks())));
    }
    return out;
  };

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
  const isolatedStates = new Map<string, Float32Array>();
  const isolate = async (caption: string): Promise<Float32Array> => {
    let out = isolatedStates.get(caption);
    if (!out) isolatedStates.set(caption, (out = await isolatedWordStates(tokenizer, await textGraph, caption, width)));
    return out;
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
      // Drawn after (and only from its step on) so that runs without it replay as before.
      const isolated = isoP > 0 && stepIndex >= isoFrom ? captions.map(() => rng.rand(1)[0] < isoP) : [];
      const eps = rng.randn(batch * latentSize);
      const { timesteps, noise } = drawNoising(rng, batch, latentSize, alphasCumprod.length);

      const z = new Float32Array(batch * latentSize);
      indices.forEach((item, b) => {
        const { mean, std } = posteriors[item][mirrored[b] ? 1 : 0];
        for (let i = 0; i < latentSize; i++) z[b * latentSize + i] = mean[i] + std[i] * eps[b * latentSize + i];
      });
      const latents = scaleLatents(z, latentShape, vae.config);
      const hidden = await encode(captions);
      for (const [i, caption] of captions.entries()) if (isolated[i]) hidden.set(await isolate(caption), i * tokens * width);
      const emptied = captions.map((c, i) => (padding[i] || isolated[i] ? c : undefined));
      if (emptied.some((c) => c !== undefined)) emptyEndOfText(tokenizer, hidden, emptied, await encode(['']));
      return {
        ...diffusionFeeds(alphasCumprod, latents, latentShape, noise, timesteps),
        encoder_hidden_states: { data: hidden, shape: [batch, tokens, width] },
        ...(gamma === undefined ? {} : { loss_weight: { data: minSnrWeights(alphasCumprod, timesteps, gamma, predictionType), shape: [batch] } }),
        ...(grounding ? groundingFeeds(grounding, tokenizer, captions, indices.map((item, b) => masksOf(item, mirrored[b]))) : {}),
      };
    },
    dataState: () => order.state(),
    loadDataState: (s) => order.loadState(s as BatchOrderState),
  };
}

/** The grounding loss's feeds for a batch: its captions' token weights and each item's object masks (`masks[b][size]`). */
function groundingFeeds(grounding: GroundingLoss, tokenizer: ClipTokenizer, captions: string[], masks: Float32Array[][]): Feeds {
  const batch = captions.length;
  const feeds: Feeds = { grounded_tokens: { data: groundedTokenWeights(tokenizer, captions), shape: [batch, tokenizer.modelMaxLength] } };
  grounding.masks().forEach(({ name, height, width }, size) => {
    const data = new Float32Array(batch * height * width);
    masks.forEach((item, b) => data.set(item[size], b * height * width));
    feeds[name] = { data, shape: [batch, height * width] };
  });
  return feeds;
}

/**
 * A caption's token states [77, C] with each word's tokens encoded as if the words before it were
 * pad tokens (positions kept, so each word keeps its position embedding): a word's state then says
 * nothing of the others. A word's own tokens still see each other, and the first word and BOS come
 * out as in the caption's own encoding (causal attention). The end-of-text states are those of the
 * caption with every word but the last replaced; `emptyEndOfText` is what training puts there.
 */
export async function isolatedWordStates(tokenizer: ClipTokenizer, graph: CompiledGraph, caption: string, width: number): Promise<Float32Array> {
  const length = tokenizer.modelMaxLength;
  const { ids, wordStarts } = tokenizer.encodeWithWordStarts(caption);
  const kept = Math.min(ids.length, length - 2); // truncated as the tokenizer does
  const starts = [...wordStarts.keys()].filter((i) => i < kept && (i === 0 || wordStarts[i]));
  // Token ranges [from, to) of each word, in the padded sequence (BOS at 0); one empty word for "".
  const words = starts.length ? starts.map((s, w) => [1 + s, 1 + (starts[w + 1] ?? kept)]) : [[1, 1]];
  const rows = new BigInt64Array(words.length * length).fill(BigInt(tokenizer.padTokenId));
  words.forEach(([from, to], w) => {
    rows[w * length] = BigInt(tokenizer.bosTokenId);
    for (let i = from; i < to; i++) rows[w * length + i] = BigInt(ids[i - 1]);
    rows[w * length + to] = BigInt(tokenizer.eosTokenId);
  });
  const states = (await graph.run({ input_ids: { data: rows, shape: [words.length, length] } })).last_hidden_state.data as Float32Array;
  // The last word's row gives BOS and the end-of-text states; each row gives its word's states.
  const row = length * width;
  const out = states.slice((words.length - 1) * row, words.length * row);
  words.forEach(([from, to], w) => out.set(states.subarray(w * row + from * width, w * row + to * width), from * width));
  return out;
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
