// What the fine-tuning methods (Textual Inversion, DreamBooth, LoRA) share: a step graph that runs
// token ids through the text encoder and the noised latents through the UNet, the noise schedule
// the model was trained with, and a micro-batch's feeds from latents and prompts.

import { type Dim, type Feeds, type RandomSource, Tensor } from '../engine/index.ts';
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

/** Graph inputs of a conditioned step: `input_ids` int64 [B, L] and the diffusion inputs. */
export interface ConditionedInputs extends DiffusionInputs {
  inputIds: Tensor;
}

export function conditionedInputs(batch: Dim, latentShape: readonly [number, number, number], tokenLength: number): ConditionedInputs {
  return { ...diffusionInputs(batch, latentShape), inputIds: Tensor.input('input_ids', [batch, tokenLength], 'int64') };
}

export function inputList(inputs: ConditionedInputs): Tensor[] {
  return [inputs.inputIds, inputs.latents, inputs.noise, inputs.timestep, inputs.sqrtAlphaCumprod, inputs.sqrtOneMinusAlphaCumprod];
}

/** Text encoder on the ids, UNet on the noised latents, ε- (or v-) loss: the graph of every method here. */
export function conditionedLoss(models: { unet: UNet2DConditionModel; textEncoder: ClipTextModel }, inputs: ConditionedInputs, predictionType: PredictionType): DiffusionLoss {
  const context = models.textEncoder.forward(inputs.inputIds).lastHiddenState;
  return diffusionLoss(models.unet, inputs, context, predictionType);
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
): Feeds {
  const [b, c, h, w] = latentShape;
  const { timesteps, noise } = drawNoising(rng, b, c * h * w, schedule.numTrainTimesteps);
  return { ...diffusionFeeds(schedule.alphasCumprod, latents, latentShape, noise, timesteps), input_ids: ids };
}
