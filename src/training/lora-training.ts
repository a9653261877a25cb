// LoRA fine-tuning on captioned images (Hu et al. 2021, as diffusers' train_text_to_image_lora.py
// does it): low-rank adapters on the attention projections of the UNet (and optionally the text
// encoder) learn with the DDPM loss while every checkpoint weight stays frozen in its file. The
// step graph has the adapters' A and B as its only trainable inputs.

import { Generator, type RunOptions } from '../engine/index.ts';
import { type BatchOrderState, ShuffledBatches } from '../data/batches.ts';
import type { TrainingData } from './training-images.ts';
import { LoraNetwork } from '../models/lora.ts';
import type { StableDiffusion } from '../pipelines/stable-diffusion.ts';
import { conditionedFeeds, conditionedInputs, conditionedLoss, inputList, noiseSchedule, tokenIdsFeed } from './fine-tune.ts';
import { LatentCache } from './latent-cache.ts';
import { compileTrainStep } from './train-step.ts';
import type { TrainingTask } from './trainer.ts';

export interface LoraTrainingOptions {
  rank: number;
  /** Defaults to the rank (multiplier 1). */
  alpha?: number;
  /** Also adapt the text encoder's q/k/v/out projections. */
  textEncoder?: boolean;
  batch: number;
  flip?: boolean;
  /** Probability of training a caption as "" (keeps classifier-free guidance working). */
  captionDropout?: number;
  /** Seed of the adapters' initialisation (A; B starts at zero). */
  seed?: number;
  run?: RunOptions;
}

/** The adapters attached to the model and the task that trains them on `data`'s images and captions. */
export async function loraTrainingTask(sd: StableDiffusion, data: TrainingData, o: LoraTrainingOptions): Promise<{ task: TrainingTask; network: LoraNetwork }> {
  if (sd.isSdxl) throw new Error(`LoRA training on captioned images is not supported on SDXL (${sd.name}) yet; DreamBooth with --lora is`);
  const p = o.captionDropout ?? 0;
  if (!(p >= 0 && p <= 1)) throw new Error(`caption dropout must be a probability in [0, 1], got ${p}`);
  const { tokenizer } = sd.components;
  const network = LoraNetwork.create(sd.components, { rank: o.rank, alpha: o.alpha, textEncoder: o.textEncoder }, new Generator(o.seed ?? 0));
  const cache = await LatentCache.encode(sd.vaeRunner, data.items.map((item) => item.image), o.flip ?? false);
  const schedule = noiseSchedule(sd.components);
  const inputs = conditionedInputs(o.batch, cache.latentShape, tokenizer.modelMaxLength);
  const { loss } = conditionedLoss(sd.components, inputs, schedule.predictionType);
  const step = await compileTrainStep({ inputs: inputList(inputs), loss, params: network.parameters(), run: o.run ?? sd.run });
  const order = new ShuffledBatches(cache.count, o.batch);
  const task: TrainingTask = {
    step,
    nextBatch(rng) {
      const indices = order.next(rng);
      const flips = indices.map(() => (o.flip ? rng.rand(1)[0] < 0.5 : false));
      const captions = indices.map((i) => (p > 0 && rng.rand(1)[0] < p ? '' : data.items[i].caption));
      const latents = cache.sample(indices, rng, flips);
      return conditionedFeeds(schedule, latents, [o.batch, ...cache.latentShape], tokenIdsFeed(tokenizer, captions), rng);
    },
    dataState: () => order.state(),
    loadDataState: (s) => order.loadState(s as BatchOrderState),
  };
  return { task, network };
}
