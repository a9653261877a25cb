// Textual Inversion (Gal et al. 2022): learn one new token-embedding row so that a placeholder word
// ("<cat-toy>") means the subject of a few images. The row starts as a related word's embedding
// ("toy"); prompts from templates ("a photo of a <cat-toy>") condition the UNet; the ε-loss's
// gradient reaches only that row. Unlike diffusers' script, which makes the whole embedding table
// trainable and copies the old rows back after each step, here the new row is its own parameter:
// nothing else is a graph input, so every other weight is untouched by construction.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Parameter, RunOptions } from '../engine/index.ts';
import type { ClipTextModel } from '../models/clip-text.ts';
import { writeEmbeddingFile } from '../models/textual-inversion.ts';
import { vaeDownscale } from '../models/vae.ts';
import type { UNet2DConditionModel } from '../models/unet.ts';
import type { StableDiffusion } from '../pipelines/stable-diffusion.ts';
import type { ClipTokenizer } from '../tokenizers/clip.ts';
import { type BatchOrderState, ShuffledBatches } from '../data/batches.ts';
import type { TrainingData } from './training-images.ts';
import type { StableDiffusionComponents } from '../models/load.ts';
import { type NoiseSchedule, conditionedFeeds, conditionedInputs, conditionedLoss, inputList, noiseSchedule, tokenIdsFeed } from './fine-tune.ts';
import { LatentCache } from './latent-cache.ts';
import { type TrainStep, compileTrainStep } from './train-step.ts';
import type { TrainingTask } from './trainer.ts';

/** Prompts for an object ("what it is") and for a style ("how it looks"); {} is the placeholder. */
export const OBJECT_TEMPLATES = [
  'a photo of a {}',
  'a rendering of a {}',
  'a close-up photo of the {}',
  'a bright photo of a {}',
  'a dark photo of the {}',
  'a cropped photo of a {}',
  'a photo of my {}',
  'a good photo of the {}',
  'a photo of one {}',
  'a small {}',
  'a large {}',
  'a blurry photo of the {}',
];
export const STYLE_TEMPLATES = [
  'a painting in the style of {}',
  'a rendering in the style of {}',
  'a picture in the style of {}',
  'a small painting in the style of {}',
  'a large painting in the style of {}',
  'an illustration in the style of {}',
  'a drawing in the style of {}',
  'a sketch in the style of {}',
];

export interface PlaceholderToken {
  token: string;
  id: number;
  initializerId: number;
  /** The new row [1, C]: the one parameter Textual Inversion trains. */
  row: Parameter;
}

/** Adds `token` to the tokenizer and a row to the text encoder, initialised from `initializer` (one token). */
export function addPlaceholderToken(tokenizer: ClipTokenizer, textEncoder: ClipTextModel, token: string, initializer: string): PlaceholderToken {
  const initIds = tokenizer.encode(initializer);
  if (initIds.length !== 1) {
    throw new Error(`the initializer "${initializer}" is ${initIds.length} tokens (${tokenizer.tokenize(initializer).join(' ')}); it must be a single token`);
  }
  const expected = textEncoder.embeddings.tokenCount;
  const id = tokenizer.addToken(token);
  if (id !== expected) throw new Error(`token ${JSON.stringify(token)} got id ${id}, but the text encoder's next row is ${expected}: was it added already?`);
  const [row] = textEncoder.addTokenEmbeddings([textEncoder.tokenEmbeddingRow(initIds[0])]);
  return { token, id, initializerId: initIds[0], row };
}

/** Loss and d loss / d row for a batch of `batch` prompts over latents [batch, C, h, w]. */
export function compileTextualInversionStep(
  models: { unet: UNet2DConditionModel; textEncoder: ClipTextModel },
  row: Parameter,
  batch: number,
  latentShape: readonly [number, number, number],
  schedule: NoiseSchedule,
  tokenLength = 77,
  run?: RunOptions,
): Promise<TrainStep> {
  const inputs = conditionedInputs(batch, latentShape, tokenLength);
  const { loss } = conditionedLoss(models, inputs, schedule.predictionType);
  return compileTrainStep({ inputs: inputList(inputs), loss, params: [row], run });
}

export interface TextualInversionTaskOptions {
  token: string;
  initToken: string;
  batch: number;
  /** 'object' (default) or 'style' prompt templates. */
  learnable?: 'object' | 'style';
  /** Random horizontal flips. */
  flip?: boolean;
  run?: RunOptions;
}

/**
 * Adds the placeholder token to the model, encodes the images once, and returns the training task
 * for the shared loop: each micro-batch is images in a seeded order (maybe mirrored), template
 * prompts naming the token, fresh noise and timesteps. Only `placeholder.row` trains.
 */
export async function textualInversionTask(sd: StableDiffusion, data: TrainingData, o: TextualInversionTaskOptions): Promise<{ task: TrainingTask; placeholder: PlaceholderToken }> {
  if (sd.isSdxl) throw new Error(`Textual Inversion training is not supported on SDXL (${sd.name}) yet (its embeddings need clip_l and clip_g rows)`);
  const { tokenizer, textEncoder } = sd.components;
  const placeholder = addPlaceholderToken(tokenizer, textEncoder, o.token, o.initToken);
  const cache = await LatentCache.encode(sd.vaeRunner, data.items.map((item) => item.image), o.flip ?? false);
  const schedule = noiseSchedule(sd.components);
  const step = await compileTextualInversionStep(sd.components, placeholder.row, o.batch, cache.latentShape, schedule, tokenizer.modelMaxLength, o.run ?? sd.run);
  const templates = o.learnable === 'style' ? STYLE_TEMPLATES : OBJECT_TEMPLATES;
  const order = new ShuffledBatches(cache.count, o.batch);
  const task: TrainingTask = {
    step,
    nextBatch(rng) {
      const indices = order.next(rng);
      const flips = indices.map(() => (o.flip ? rng.rand(1)[0] < 0.5 : false));
      const latents = cache.sample(indices, rng, flips);
      const prompts = indices.map(() => templates[rng.randint(templates.length)].replace('{}', placeholder.token));
      return conditionedFeeds(schedule, latents, [o.batch, ...cache.latentShape], tokenIdsFeed(tokenizer, prompts), rng);
    },
    dataState: () => order.state(),
    loadDataState: (s) => order.loadState(s as BatchOrderState),
  };
  return { task, placeholder };
}

/** diffusers' output file name for a learned embedding. */
export const LEARNED_EMBEDS_FILE = 'learned_embeds.safetensors';

/** Writes `dir/learned_embeds.safetensors`: the token's learned row, [1, C]. */
export function saveLearnedEmbeds(dir: string, placeholder: PlaceholderToken): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LEARNED_EMBEDS_FILE);
  writeEmbeddingFile(path, { token: placeholder.token, vectors: [new Float32Array(placeholder.row.value())] });
  return path;
}

/** The resolution the model was trained at: the UNet's sample_size times the VAE's downscale. */
export function defaultResolution(components: Pick<StableDiffusionComponents, 'unet' | 'vae'>): number {
  return components.unet.config.sample_size * vaeDownscale(components.vae.config);
}
