// DreamBooth (Ruiz et al. 2022): fine-tune the model on a few images of one subject, captioned with
// a rare token ("a photo of sks dog"), while class-prior preservation keeps what the class ("a
// photo of dog") looked like before: every batch pairs instance images with images the model itself
// generated for the class prompt, and the loss is
//
//   L = mse(ε̂_instance, ε_instance) + λ · mse(ε̂_class, ε_class)
//
// Either the whole UNet (and optionally the text encoder) trains and the result is a diffusers
// folder, or only LoRA adapters train and the result is a LoRA file for the base model.

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { throwIfAborted } from '../engine/abort.ts';
import { Generator, type Parameter, type RunOptions, type Tensor, add, mean, mul, slice, sub } from '../engine/index.ts';
import { type BatchOrderState, ShuffledBatches } from '../data/batches.ts';
import { listImageFolder } from '../data/folder.ts';
import { writePng } from '../io/png.ts';
import type { ClipTextModel } from '../models/clip-text.ts';
import { LoraNetwork } from '../models/lora.ts';
import type { UNet2DConditionModel } from '../models/unet.ts';
import { generate } from '../pipelines/generate.ts';
import type { StableDiffusion } from '../pipelines/stable-diffusion.ts';
import { type NoiseSchedule, conditionedFeeds, conditionedInputs, conditionedLoss, inputList, noiseSchedule, sdxlTrainingFeeds, tokenIdsFeed } from './fine-tune.ts';
import { type ComponentExport, WEIGHTS_FILE, exportPipeline } from './export.ts';
import { LatentCache } from './latent-cache.ts';
import { type TrainStep, compileTrainStep } from './train-step.ts';
import type { TrainingData } from './training-images.ts';
import type { TrainingTask } from './trainer.ts';

function mse(a: Tensor, b: Tensor): Tensor {
  const d = sub(a, b);
  return mean(mul(d, d));
}

/**
 * The prior-preservation loss over a batch laid out [instance × n; class × n]: the instance and
 * class halves' mean squared errors, and their sum with the class half weighted by λ.
 */
export function priorPreservationLoss(prediction: Tensor, target: Tensor, instanceCount: number, priorLossWeight: number): { loss: Tensor; instanceLoss: Tensor; priorLoss: Tensor } {
  const total = prediction.shape[0];
  if (typeof total !== 'number' || total <= instanceCount) throw new Error(`prior preservation needs class items after the ${instanceCount} instance items, batch is ${total}`);
  const instanceLoss = mse(slice(prediction, 0, 0, instanceCount), slice(target, 0, 0, instanceCount));
  const priorLoss = mse(slice(prediction, 0, instanceCount, total), slice(target, 0, instanceCount, total));
  return { loss: add(instanceLoss, mul(priorLoss, priorLossWeight)), instanceLoss, priorLoss };
}

export interface DreamBoothStepOptions {
  /** Instance items per batch; with prior preservation as many class items follow. */
  instanceBatch: number;
  /** λ; undefined trains without prior preservation. */
  priorLossWeight?: number;
  latentShape: readonly [number, number, number];
  schedule: NoiseSchedule;
  tokenLength?: number;
  run?: RunOptions;
}

/** Loss (with `instance_loss` / `prior_loss` metrics) and gradients for `params`. */
export function compileDreamBoothStep(models: { unet: UNet2DConditionModel; textEncoder: ClipTextModel; textEncoder2?: ClipTextModel }, params: readonly Parameter[], o: DreamBoothStepOptions): Promise<TrainStep> {
  const prior = o.priorLossWeight !== undefined;
  const inputs = conditionedInputs(prior ? 2 * o.instanceBatch : o.instanceBatch, o.latentShape, o.tokenLength ?? 77, models.textEncoder2 !== undefined);
  const { loss, prediction, target } = conditionedLoss(models, inputs, o.schedule.predictionType);
  if (!prior) return compileTrainStep({ inputs: inputList(inputs), loss, params, run: o.run });
  const split = priorPreservationLoss(prediction, target, o.instanceBatch, o.priorLossWeight!);
  return compileTrainStep({ inputs: inputList(inputs), loss: split.loss, params, metrics: { instance_loss: split.instanceLoss, prior_loss: split.priorLoss }, run: o.run });
}

export interface ClassImageOptions {
  prompt: string;
  count: number;
  resolution: number;
  /** Sampler steps per image (default 30). */
  steps?: number;
  seed?: number;
  /** Checked between images (and passed to the sampler). */
  signal?: AbortSignal;
  onImage?(done: number, total: number): void;
}

/** Generates class images with the model as it is until `dir` holds `count` images; returns how many were made. */
export async function ensureClassImages(sd: StableDiffusion, dir: string, o: ClassImageOptions): Promise<number> {
  mkdirSync(dir, { recursive: true });
  const have = listImageFolder(dir).entries.length;
  const missing = Math.max(0, o.count - have);
  for (let i = 0; i < missing; i++) {
    throwIfAborted(o.signal, 'generating class images');
    const seed = (o.seed ?? 0) + have + i;
    const { images } = await generate(sd, { prompts: [o.prompt], steps: o.steps ?? 30, seed, width: o.resolution, height: o.resolution, signal: o.signal });
    let name = join(dir, `class-${String(have + i).padStart(4, '0')}.png`);
    for (let k = 1; existsSync(name); k++) name = join(dir, `class-${String(have + i).padStart(4, '0')}-${k}.png`);
    await writePng(name, images[0]);
    o.onImage?.(i + 1, missing);
  }
  return missing;
}

export interface DreamBoothTaskOptions {
  /** "a photo of sks dog": the rare token and the class. */
  instancePrompt: string;
  /** "a photo of dog"; needed with class images. */
  classPrompt?: string;
  /** λ, the prior loss weight (default 1). */
  priorLossWeight?: number;
  /** Instance images per micro-batch (as many class images join them). */
  batch: number;
  trainTextEncoder?: boolean;
  /** Train LoRA adapters of this rank (alpha defaults to the rank) instead of the whole model. */
  lora?: { rank: number; alpha?: number; seed?: number };
  run?: RunOptions;
}

/**
 * The DreamBooth training task for the shared loop. With `classes` the batch is [instances; class
 * images] and the loss preserves the prior; the trained parameters are the whole UNet (and text
 * encoder) or, with `lora`, only the adapters of the returned network.
 */
export async function dreamBoothTask(
  sd: StableDiffusion,
  instances: TrainingData,
  classes: TrainingData | undefined,
  o: DreamBoothTaskOptions,
): Promise<{ task: TrainingTask; network?: LoraNetwork }> {
  const { tokenizer, textEncoder, unet } = sd.components;
  if (classes && o.classPrompt === undefined) throw new Error('class images need a class prompt');
  // SDXL trains LoRA adapters on its UNet; its text encoders and full fine-tuning are not wired yet.
  if (sd.isSdxl && (!o.lora || o.trainTextEncoder)) throw new Error(`DreamBooth on SDXL (${sd.name}) trains a UNet LoRA only: use --lora and leave the text encoders frozen`);
  const instanceLatents = await LatentCache.encode(sd.vaeRunner, instances.items.map((item) => item.image), false);
  const classLatents = classes ? await LatentCache.encode(sd.vaeRunner, classes.items.map((item) => item.image), false) : undefined;

  const network = o.lora ? LoraNetwork.create(sd.components, { rank: o.lora.rank, alpha: o.lora.alpha, textEncoder: o.trainTextEncoder }, new Generator(o.lora.seed ?? 0)) : undefined;
  const params = network ? network.parameters() : [...unet.parameters(), ...(o.trainTextEncoder ? textEncoder.parameters() : [])];
  const schedule = noiseSchedule(sd.components);
  const step = await compileDreamBoothStep(sd.components, params, {
    instanceBatch: o.batch,
    priorLossWeight: classes ? (o.priorLossWeight ?? 1) : undefined,
    latentShape: instanceLatents.latentShape,
    schedule,
    tokenLength: tokenizer.modelMaxLength,
    run: o.run ?? sd.run,
  });
  const prompts = [...new Array<string>(o.batch).fill(o.instancePrompt), ...(classes ? new Array<string>(o.batch).fill(o.classPrompt!) : [])];
  const ids = tokenIdsFeed(tokenizer, prompts);
  const [, h, w] = instanceLatents.latentShape;
  const sdxlFeeds = sdxlTrainingFeeds(sd.components, prompts, [h * sd.vaeScaleFactor, w * sd.vaeScaleFactor]);
  const instanceOrder = new ShuffledBatches(instanceLatents.count, o.batch);
  const classOrder = classLatents ? new ShuffledBatches(classLatents.count, o.batch) : undefined;
  const task: TrainingTask = {
    step,
    nextBatch(rng) {
      const own = instanceLatents.sample(instanceOrder.next(rng), rng);
      const latents = classLatents ? concat(own, classLatents.sample(classOrder!.next(rng), rng)) : own;
      return conditionedFeeds(schedule, latents, [prompts.length, ...instanceLatents.latentShape], ids, rng, sdxlFeeds);
    },
    dataState: () => ({ instances: instanceOrder.state(), classes: classOrder?.state() }),
    loadDataState: (s) => {
      const state = s as { instances: BatchOrderState; classes?: BatchOrderState };
      instanceOrder.loadState(state.instances);
      if (state.classes) classOrder?.loadState(state.classes);
    },
  };
  return { task, ...(network ? { network } : {}) };
}

/** diffusers' file name for LoRA weights. */
export const LORA_WEIGHTS_FILE = 'pytorch_lora_weights.safetensors';

/**
 * Writes the result: `out/pytorch_lora_weights.safetensors` (recording the base model) for a LoRA
 * run, else `out` as a diffusers folder: the base with the trained UNet (and text encoder).
 */
export function exportDreamBooth(sd: StableDiffusion, modelPath: string, out: string, o: { network?: LoraNetwork; trainTextEncoder?: boolean }): string {
  if (o.network) {
    mkdirSync(out, { recursive: true });
    const path = join(out, LORA_WEIGHTS_FILE);
    o.network.save(path, 'diffusers', { base_model: modelPath });
    return path;
  }
  const { unet, textEncoder } = sd.components;
  const component = (name: string, params: Parameter[], weightsFile: string): ComponentExport => ({
    config: JSON.parse(readFileSync(join(modelPath, name, 'config.json'), 'utf8')) as unknown,
    params,
    weightsFile,
  });
  exportPipeline(modelPath, out, {
    unet: component('unet', unet.parameters(), WEIGHTS_FILE.diffusers),
    ...(o.trainTextEncoder ? { text_encoder: component('text_encoder', textEncoder.parameters(), WEIGHTS_FILE.transformers) } : {}),
  });
  return out;
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
