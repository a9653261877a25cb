// DreamBooth (Ruiz et al. 2022): fine-tune the model on a few images of one subject, captioned with
// a rare token ("a photo of sks dog"), while class-prior preservation keeps what the class ("a
// photo of dog") looked like before: every batch pairs instance images with images the model itself
// generated for the class prompt, and the loss is
//
//   L = mse(ε̂_instance, ε_instance) + λ · mse(ε̂_class, ε_class)
//
// Either the whole UNet (and optionally the text encoder) trains and the result is a diffusers
// folder, or only LoRA adapters train and the result is a LoRA file for the base model.

import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AdamW, Generator, type Parameter, type RunOptions, type Tensor, add, mean, mul, slice, sub } from '../engine/index.ts';
import { ShuffledBatches } from '../data/batches.ts';
import { ImageFolderDataset, listImageFolder } from '../data/folder.ts';
import { writePng } from '../io/png.ts';
import type { ClipTextModel } from '../models/clip-text.ts';
import { LoraNetwork } from '../models/lora.ts';
import { writeDiffusersFolder } from '../models/save-diffusers.ts';
import type { UNet2DConditionModel } from '../models/unet.ts';
import { generate } from '../pipelines/generate.ts';
import type { StableDiffusion } from '../pipelines/stable-diffusion.ts';
import { type NoiseSchedule, conditionedFeeds, conditionedInputs, conditionedLoss, inputList, noiseSchedule, tokenIdsFeed } from './fine-tune.ts';
import { LatentCache } from './latent-cache.ts';
import { lrSchedule } from './lr-schedule.ts';
import { defaultResolution } from './textual-inversion.ts';
import { type TrainStep, compileTrainStep } from './train-step.ts';
import { type StepInfo, type TrainResult, train } from './trainer.ts';

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
export function compileDreamBoothStep(models: { unet: UNet2DConditionModel; textEncoder: ClipTextModel }, params: readonly Parameter[], o: DreamBoothStepOptions): Promise<TrainStep> {
  const prior = o.priorLossWeight !== undefined;
  const inputs = conditionedInputs(prior ? 2 * o.instanceBatch : o.instanceBatch, o.latentShape, o.tokenLength ?? 77);
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
  onImage?(done: number, total: number): void;
}

/** Generates class images with the model as it is until `dir` holds `count` images; returns how many were made. */
export async function ensureClassImages(sd: StableDiffusion, dir: string, o: ClassImageOptions): Promise<number> {
  mkdirSync(dir, { recursive: true });
  const have = listImageFolder(dir).entries.length;
  const missing = Math.max(0, o.count - have);
  for (let i = 0; i < missing; i++) {
    const seed = (o.seed ?? 0) + have + i;
    const { images } = await generate(sd, { prompts: [o.prompt], steps: o.steps ?? 30, seed, width: o.resolution, height: o.resolution });
    let name = join(dir, `class-${String(have + i).padStart(4, '0')}.png`);
    for (let k = 1; existsSync(name); k++) name = join(dir, `class-${String(have + i).padStart(4, '0')}-${k}.png`);
    await writePng(name, images[0]);
    o.onImage?.(i + 1, missing);
  }
  return missing;
}

export interface DreamBoothOptions {
  /** The base model's folder (a diffusers folder, for a full fine-tune's output). */
  modelPath: string;
  images: string;
  instancePrompt: string;
  /** Prior preservation: the class prompt, the class image count and λ. */
  classPrompt?: string;
  classImages?: number;
  /** Where class images are kept (default out/class-images). */
  classDir?: string;
  priorLossWeight?: number;
  trainTextEncoder?: boolean;
  /** Train LoRA adapters of this rank instead of the whole model. */
  loraRank?: number;
  loraAlpha?: number;
  out: string;
  steps?: number;
  lr?: number;
  resolution?: number;
  batch?: number;
  seed?: number;
  checkpointEvery?: number;
  resume?: boolean;
  signal?: AbortSignal;
  classSteps?: number;
  onStep?(info: StepInfo): void;
  onPrepare?(message: string): void;
  onWarning?(message: string): void;
}

export const DREAMBOOTH_DEFAULTS = { steps: 400, fullLr: 5e-6, loraLr: 1e-4, batch: 1, classImages: 100, priorLossWeight: 1, seed: 0, checkpointEvery: 200 };
export const LORA_WEIGHTS_FILE = 'pytorch_lora_weights.safetensors';

/** Trains DreamBooth; writes a diffusers folder to `out`, or `out/pytorch_lora_weights.safetensors` with `loraRank`. */
export async function trainDreamBooth(sd: StableDiffusion, options: DreamBoothOptions): Promise<TrainResult & { output: string }> {
  const o = { ...DREAMBOOTH_DEFAULTS, ...options };
  const lora = o.loraRank !== undefined;
  if (!lora && !existsSync(join(o.modelPath, 'model_index.json'))) {
    throw new Error('a full DreamBooth fine-tune writes a diffusers folder and needs a diffusers-folder base model; use --lora-rank for single-file models');
  }
  const resolution = o.resolution ?? defaultResolution(sd);
  const prior = o.classPrompt !== undefined;
  const { tokenizer, textEncoder, unet } = sd.components;

  if (prior) {
    const classDir = o.classDir ?? join(o.out, 'class-images');
    const made = await ensureClassImages(sd, classDir, {
      prompt: o.classPrompt!,
      count: o.classImages,
      resolution,
      steps: o.classSteps,
      seed: o.seed,
      onImage: (done, total) => o.onPrepare?.(`class image ${done}/${total}`),
    });
    if (made) o.onPrepare?.(`generated ${made} class image(s) in ${classDir}`);
  }
  const encode = async (dir: string) => {
    const data = await ImageFolderDataset.load(dir, { resolution, onWarning: o.onWarning });
    o.onPrepare?.(`encoding ${data.length} image(s) from ${dir}`);
    return LatentCache.encode(sd.vaeRunner, data.items.map((item) => item.image), false);
  };
  const instances = await encode(o.images);
  const classes = prior ? await encode(o.classDir ?? join(o.out, 'class-images')) : undefined;

  const network = lora ? LoraNetwork.create(sd.components, { rank: o.loraRank!, alpha: o.loraAlpha, textEncoder: o.trainTextEncoder }, new Generator(o.seed + 1)) : undefined;
  const params = network ? network.parameters() : [...unet.parameters(), ...(o.trainTextEncoder ? textEncoder.parameters() : [])];
  const schedule = noiseSchedule(sd.components);
  const step = await compileDreamBoothStep(sd.components, params, {
    instanceBatch: o.batch,
    priorLossWeight: prior ? o.priorLossWeight : undefined,
    latentShape: instances.latentShape,
    schedule,
    tokenLength: tokenizer.modelMaxLength,
    run: sd.run,
  });
  const prompts = [...new Array<string>(o.batch).fill(o.instancePrompt), ...(prior ? new Array<string>(o.batch).fill(o.classPrompt!) : [])];
  const ids = tokenIdsFeed(tokenizer, prompts);
  const instanceOrder = new ShuffledBatches(instances.count, o.batch);
  const classOrder = classes ? new ShuffledBatches(classes.count, o.batch) : undefined;
  const lr = o.lr ?? (lora ? o.loraLr : o.fullLr);

  const result = await train({
    task: {
      step,
      nextBatch(rng) {
        const instanceLatents = instances.sample(instanceOrder.next(rng), rng);
        const latents = classes ? concat(instanceLatents, classes.sample(classOrder!.next(rng), rng)) : instanceLatents;
        return conditionedFeeds(schedule, latents, [prompts.length, ...instances.latentShape], ids, rng);
      },
      dataState: () => ({ instances: instanceOrder.state(), classes: classOrder?.state() }),
      loadDataState: (s) => {
        const state = s as { instances: never; classes?: never };
        instanceOrder.loadState(state.instances);
        if (state.classes) classOrder?.loadState(state.classes);
      },
    },
    optimizer: new AdamW(params, { lr }),
    lr: lrSchedule({ kind: 'constant', lr }),
    steps: o.steps,
    rng: new Generator(o.seed),
    maxGradNorm: 1,
    checkpoint: { dir: join(o.out, 'checkpoints'), every: o.checkpointEvery, keep: 1, config: { method: 'dreambooth', instancePrompt: o.instancePrompt, classPrompt: o.classPrompt, loraRank: o.loraRank, resolution } },
    resume: o.resume,
    signal: o.signal,
    onStep: o.onStep,
  });

  if (network) {
    const output = join(o.out, LORA_WEIGHTS_FILE);
    network.save(output, 'diffusers', { base_model: o.modelPath });
    return { ...result, output };
  }
  writeDiffusersFolder(o.modelPath, o.out, { unet, ...(o.trainTextEncoder ? { text_encoder: textEncoder } : {}) });
  return { ...result, output: o.out };
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
