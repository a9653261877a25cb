// What the fine-tuning methods (Textual Inversion, DreamBooth, LoRA) share: a step graph that runs
// token ids through the text encoder and the noised latents through the UNet, the noise schedule
// the model was trained with, and a micro-batch's feeds from latents and prompts.

import { type Dim, type Feeds, type RandomSource, Tensor, concat } from '../engine/index.ts';
import type { ClipTextModel } from '../models/clip-text.ts';
import type { StableDiffusionComponents } from '../models/load.ts';
import type { UNet2DConditionModel } from '../models/unet.ts';
import { DDPMScheduler, type PredictionType } from '../schedulers/index.ts';
import type { ClipTokenizer } from '../tokenizers/clip.ts';
import { type DiffusionInputs, type DiffusionLoss, diffusionFeeds, diffusionInputs, diffusionLoss, drawNoising } from './diffusion-loss.ts';

export interface NoiseSchedule {
  alphasCumprod: Float32Array;
  numTrainTimesteps: number;
  predictionType: PredictionType;
}

/** ᾱ and the prediction type from the model's scheduler config (the DDPM forward process it was trained with). */
export function noiseSchedule(components: Pick<StableDiffusionComponents, 'schedulerConfig'>): NoiseSchedule {
  const ddpm = new DDPMScheduler(components.schedulerConfig);
  return { alphasCumprod: ddpm.alphasCumprod, numTrainTimesteps: ddpm.config.numTrainTimesteps, predictionType: ddpm.config.predictionType };
}

/**
 * Graph inputs of a conditioned step: `input_ids` int64 [B, L] and the diffusion inputs; for SDXL
 * also the second tokenizer's `input_ids_2` and the size conditioning `time_ids` [B, 6].
 */
export interface ConditionedInputs extends DiffusionInputs {
  inputIds: Tensor;
  inputIds2?: Tensor;
  timeIds?: Tensor;
}

export function conditionedInputs(batch: Dim, latentShape: readonly [number, number, number], tokenLength: number, sdxl = false): ConditionedInputs {
  const inputs = { ...diffusionInputs(batch, latentShape), inputIds: Tensor.input('input_ids', [batch, tokenLength], 'int64') };
  if (!sdxl) return inputs;
  return { ...inputs, inputIds2: Tensor.input('input_ids_2', [batch, tokenLength], 'int64'), timeIds: Tensor.input('time_ids', [batch, 6]) };
}

export function inputList(inputs: ConditionedInputs): Tensor[] {
  const sdxl = inputs.inputIds2 && inputs.timeIds ? [inputs.inputIds2, inputs.timeIds] : [];
  return [inputs.inputIds, ...sdxl, inputs.latents, inputs.noise, inputs.timestep, inputs.sqrtAlphaCumprod, inputs.sqrtOneMinusAlphaCumprod];
}

/**
 * Text encoder on the ids, UNet on the noised latents, ε- (or v-) loss: the graph of every method
 * here. SDXL (inputs with `input_ids_2`): both towers' penultimate states side by side, and the
 * second tower's text_embeds with the time ids as the UNet's added conditions.
 */
export function conditionedLoss(models: { unet: UNet2DConditionModel; textEncoder: ClipTextModel; textEncoder2?: ClipTextModel }, inputs: ConditionedInputs, predictionType: PredictionType): DiffusionLoss {
  if (!inputs.inputIds2) return diffusionLoss(models.unet, inputs, models.textEncoder.forward(inputs.inputIds).lastHiddenState, predictionType);
  if (!models.textEncoder2 || !inputs.timeIds) throw new Error('SDXL training needs the second text encoder and time_ids');
  const first = models.textEncoder.forward(inputs.inputIds, { outputHiddenStates: true });
  const second = models.textEncoder2.forward(inputs.inputIds2, { outputHiddenStates: true });
  const context = concat([first.penultimate!, second.penultimate!], -1);
  return diffusionLoss(models.unet, inputs, context, predictionType, { added: { textEmbeds: second.textEmbeds!, timeIds: inputs.timeIds } });
}

/**
 * SDXL's extra feeds for a batch of prompts at one picture size: the second tokenizer's ids and
 * time ids [h, w, 0, 0, h, w] (uncropped, target = the training size); none for other models.
 */
export function sdxlTrainingFeeds(components: Pick<StableDiffusionComponents, 'tokenizer2'>, prompts: readonly string[], size: readonly [number, number]): Feeds {
  if (!components.tokenizer2) return {};
  const row = [size[0], size[1], 0, 0, size[0], size[1]];
  return { input_ids_2: tokenIdsFeed(components.tokenizer2, prompts), time_ids: { data: Float32Array.from({ length: prompts.length * 6 }, (_, i) => row[i % 6]!), shape: [prompts.length, 6] } };
}

/** Padded, truncated token ids of prompts as an int64 feed [B, L]. */
export function tokenIdsFeed(tokenizer: ClipTokenizer, prompts: readonly string[]): { data: BigInt64Array; shape: [number, number] } {
  const length = tokenizer.modelMaxLength;
  const { inputIds } = tokenizer.call([...prompts], { maxLength: length });
  const data = new BigInt64Array(prompts.length * length);
  inputIds.forEach((row, b) => row.forEach((id, l) => (data[b * length + l] = BigInt(id))));
  return { data, shape: [prompts.length, length] };
}

/** One micro-batch's feeds: fresh timesteps and noise from `rng`, the latents and the prompts' ids. */
export function conditionedFeeds(
  schedule: NoiseSchedule,
  latents: Float32Array,
  latentShape: readonly [number, number, number, number],
  ids: { data: BigInt64Array; shape: [number, number] },
  rng: RandomSource,
  extra: Feeds = {},
): Feeds {
  const [b, c, h, w] = latentShape;
  const { timesteps, noise } = drawNoising(rng, b, c * h * w, schedule.numTrainTimesteps);
  return { ...diffusionFeeds(schedule.alphasCumprod, latents, latentShape, noise, timesteps), input_ids: ids, ...extra };
}
