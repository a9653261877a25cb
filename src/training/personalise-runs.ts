// Textual Inversion, LoRA and DreamBooth as library calls: a model, images and plain settings in,
// the written file(s) out. Each builds its task (textual-inversion.ts, lora-training.ts,
// dreambooth.ts) and runs it on the shared loop (training-run.ts): progress callbacks, checkpoints
// in OUT/checkpoints, an AbortSignal that stops between steps leaving a checkpoint to resume from.
//
//   const { files } = await trainLora({ model: 'sd15/', images: 'captioned/', out: 'lora-out', rank: 4, steps: 1000,
//                                      signal, onProgress: (p) => console.log(p.step, p.loss) });

import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { throwIfAborted } from '../engine/abort.ts';
import type { RgbImage } from '../io/image.ts';
import type { LoraKeyStyle } from '../models/lora.ts';
import { generate } from '../pipelines/generate.ts';
import { type PipelineOptions, loadPipeline } from '../pipelines/load-pipeline.ts';
import type { StableDiffusion } from '../pipelines/stable-diffusion.ts';
import { LORA_WEIGHTS_FILE, dreamBoothTask, ensureClassImages, exportDreamBooth } from './dreambooth.ts';
import { loraTrainingTask } from './lora-training.ts';
import { defaultResolution, saveLearnedEmbeds, textualInversionTask } from './textual-inversion.ts';
import { type TrainingImages, loadTrainingImages } from './training-images.ts';
import { type TrainingRunOptions, type TrainingTaskRun, checkOutput, describeRun, runTrainingTask } from './training-run.ts';
import type { TrainResult, TrainingTask } from './trainer.ts';

export interface PersonaliseRunOptions extends TrainingRunOptions {
  /**
   * A diffusers folder or single-file `.safetensors`, or a loaded model. Training changes a loaded
   * model (new token, adapters, weights): do not hand it to other work afterwards.
   */
  model: string | StableDiffusion;
  /** For a model path: `config` and `tokenizer` for single files (default tokenizer: beside the file, else the bundled one), `device`. */
  load?: PipelineOptions;
  images: TrainingImages;
  /** Sample pictures while training: `prompt` drawn with the weights as they are, every `every` steps. */
  samples?: SampleOptions;
}

export interface SampleOptions {
  every: number;
  /** For Textual Inversion, name the new token in it. */
  prompt: string;
  /** Sampler steps (default 20), guidance (default: the model's own, as `nuri generate`), seed (default: the run's). */
  steps?: number;
  guidance?: number;
  seed?: number;
  onSample(sample: { step: number; image: RgbImage }): void | Promise<void>;
}

export interface TrainingOutput {
  /** What the run wrote: an embedding or LoRA file, or a diffusers folder. */
  files: string[];
  /** Steps completed in total, the loss of each step run by this call, the last checkpoint. */
  step: number;
  losses: number[];
  checkpoint?: string;
}

export interface TextualInversionRunOptions extends PersonaliseRunOptions {
  /** The new word, e.g. "<cat-toy>". */
  token: string;
  /** A one-token word the new word starts from, e.g. "toy". */
  initToken: string;
  /** Prompt templates: 'object' (default) or 'style'. */
  learnable?: 'object' | 'style';
}

export interface LoraRunOptions extends PersonaliseRunOptions {
  /** Adapter rank (default 4) and alpha (default: the rank, a multiplier of 1). */
  rank?: number;
  alpha?: number;
  /** Also adapt the text encoder's attention. */
  trainTextEncoder?: boolean;
  /** Probability of training with the empty caption (default 0). */
  captionDropout?: number;
  /** Tensor names in the file: 'diffusers' (PEFT, default) or 'kohya'. */
  keyStyle?: LoraKeyStyle;
}

export interface DreamBoothRunOptions extends PersonaliseRunOptions {
  /** The subject with its rare token, e.g. "a photo of sks dog". */
  instancePrompt: string;
  /** The class, e.g. "a photo of dog": turns on prior preservation. */
  classPrompt?: string;
  /** Class images wanted (default 100); missing ones are generated with the model first. */
  classImages?: number;
  /** Where class images are kept (default OUT/class-images). */
  classDir?: string;
  /** Sampling steps per generated class image (default 30). */
  classSteps?: number;
  /** λ, the weight of the class-prior loss (default 1). */
  priorLossWeight?: number;
  trainTextEncoder?: boolean;
  /** Train LoRA adapters of this rank only: the output is a LoRA file for the base model. */
  loraRank?: number;
  loraAlpha?: number;
}

/** Each method's defaults: the learning rates diffusers' example scripts use. */
export const PERSONALISE_DEFAULTS = {
  textualInversion: { lr: 5e-4, steps: 3000 },
  lora: { lr: 1e-4, steps: 1000, rank: 4, captionDropout: 0, keyStyle: 'diffusers' as LoraKeyStyle },
  dreamBooth: { lr: 5e-6, loraLr: 1e-4, steps: 400, classImages: 100, classSteps: 30, priorLossWeight: 1 },
};

/** Learns one new embedding row for `token` from a few images; writes OUT/learned_embeds.safetensors. */
export async function trainTextualInversion(o: TextualInversionRunOptions): Promise<TrainingOutput> {
  const label = 'train textual-inversion';
  checkOutput(o);
  const sd = await loadModel(o);
  const resolution = o.resolution ?? defaultResolution(sd.components);
  const data = await loadTrainingImages(o.images, resolution, { requireCaptions: false, onWarning: warn(o) });
  const batch = o.batch ?? 1;
  const { task, placeholder } = await textualInversionTask(sd, data, { token: o.token, initToken: o.initToken, batch, learnable: o.learnable, flip: o.flip });
  const result = await run(o, sd, label, task, PERSONALISE_DEFAULTS.textualInversion, { batch, resolution });
  return output(result, [saveLearnedEmbeds(o.out, placeholder)]);
}

/** Trains LoRA adapters on captioned images; writes OUT/pytorch_lora_weights.safetensors. */
export async function trainLora(o: LoraRunOptions): Promise<TrainingOutput> {
  const defaults = PERSONALISE_DEFAULTS.lora;
  checkOutput(o);
  const sd = await loadModel(o);
  const resolution = o.resolution ?? defaultResolution(sd.components);
  const data = await loadTrainingImages(o.images, resolution, { requireCaptions: true, onWarning: warn(o) });
  const batch = o.batch ?? 1;
  const { task, network } = await loraTrainingTask(sd, data, {
    rank: o.rank ?? defaults.rank,
    alpha: o.alpha,
    textEncoder: o.trainTextEncoder,
    batch,
    flip: o.flip,
    captionDropout: o.captionDropout ?? defaults.captionDropout,
    seed: o.seed,
  });
  const result = await run(o, sd, 'train lora', task, defaults, { batch, resolution });
  const file = join(o.out, LORA_WEIGHTS_FILE);
  network.save(file, o.keyStyle ?? defaults.keyStyle, { base_model: modelName(o) });
  return output(result, [file]);
}

/**
 * DreamBooth: fine-tunes on a few images of one subject, with class-prior preservation when a
 * class prompt is given. Writes OUT as a diffusers folder (the model must be a diffusers folder
 * path), or with `loraRank` OUT/pytorch_lora_weights.safetensors.
 */
export async function trainDreamBooth(o: DreamBoothRunOptions): Promise<TrainingOutput> {
  const defaults = PERSONALISE_DEFAULTS.dreamBooth;
  const lora = o.loraRank !== undefined;
  if (!lora && !(typeof o.model === 'string' && existsSync(join(o.model, 'model_index.json')))) {
    throw new Error('a full DreamBooth fine-tune writes a diffusers folder and needs a diffusers-folder model path; give a LoRA rank (--lora-rank) to train a LoRA instead');
  }
  if (o.loraAlpha !== undefined && !lora) throw new Error('a LoRA alpha (--lora-alpha) needs a LoRA rank (--lora-rank)');
  checkOutput(o);
  const sd = await loadModel(o);
  const resolution = o.resolution ?? defaultResolution(sd.components);
  const batch = o.batch ?? 1;
  let classes;
  if (o.classPrompt !== undefined) {
    const classDir = o.classDir ?? join(o.out, 'class-images');
    mkdirSync(classDir, { recursive: true });
    const made = await ensureClassImages(sd, classDir, {
      prompt: o.classPrompt,
      count: o.classImages ?? defaults.classImages,
      resolution,
      steps: o.classSteps ?? defaults.classSteps,
      seed: o.seed,
      signal: o.signal,
      onImage: (done, total) => o.onProgress?.({ phase: 'class-images', step: done, total }),
    });
    if (made) o.onLog?.(`generated ${made} class image(s) in ${classDir}`);
    classes = await loadTrainingImages(classDir, resolution, { requireCaptions: false, onWarning: warn(o) });
  }
  const instances = await loadTrainingImages(o.images, resolution, { requireCaptions: false, onWarning: warn(o) });
  const { task, network } = await dreamBoothTask(sd, instances, classes, {
    instancePrompt: o.instancePrompt,
    classPrompt: o.classPrompt,
    priorLossWeight: o.priorLossWeight ?? defaults.priorLossWeight,
    batch,
    trainTextEncoder: o.trainTextEncoder,
    lora: lora ? { rank: o.loraRank!, alpha: o.loraAlpha, seed: o.seed } : undefined,
  });
  const result = await run(o, sd, 'train dreambooth', task, { lr: lora ? defaults.loraLr : defaults.lr, steps: defaults.steps }, { batch, resolution });
  const path = exportDreamBooth(sd, typeof o.model === 'string' ? o.model : modelName(o), o.out, { network, trainTextEncoder: o.trainTextEncoder });
  return output(result, [path]);
}

async function loadModel(o: PersonaliseRunOptions): Promise<StableDiffusion> {
  if (typeof o.model !== 'string') return o.model;
  if (!existsSync(o.model)) throw new Error(`model not found: ${o.model}`);
  const sd = await loadPipeline(o.model, o.load);
  for (const warning of sd.components.warnings) o.onLog?.(`warning: ${warning}`);
  return sd;
}

function modelName(o: PersonaliseRunOptions): string {
  return typeof o.model === 'string' ? o.model : o.model.name;
}

function warn(o: PersonaliseRunOptions): (message: string) => void {
  return (message) => o.onLog?.(`warning: ${message}`);
}

async function run(o: PersonaliseRunOptions, sd: StableDiffusion, label: string, task: TrainingTask, defaults: { lr: number; steps: number }, settled: { batch: number; resolution: number }): Promise<TrainResult> {
  // Stopped while preparing (loading, encoding the images, compiling the step): nothing to checkpoint yet.
  throwIfAborted(o.signal, label);
  // The model's own graphs (samples now, generations after) feed the trained weights as they stand.
  await sd.setTrainable(task.step.params);
  o.onLog?.(describeRun(label, task, o.steps ?? defaults.steps, settled.batch, o.gradAccum));
  const validate = sampler(sd, o, settled.resolution);
  return runTrainingTask(o, { task, defaultLr: defaults.lr, defaultSteps: defaults.steps, validate, config: { command: label, ...recordedSettings(o), ...settled } });
}

/** The loop's validation hook that draws `o.samples` with the model being trained (its trainable weights are fed as they stand). */
function sampler(sd: StableDiffusion, o: PersonaliseRunOptions, resolution: number): TrainingTaskRun['validate'] {
  const s = o.samples;
  if (!s) return undefined;
  if (!(Number.isInteger(s.every) && s.every > 0)) throw new Error(`samples.every must be a positive whole number of steps, got ${s.every}`);
  return {
    every: s.every,
    run: async (step) => {
      const { images } = await generate(sd, { prompts: [s.prompt], steps: s.steps ?? 20, guidance: s.guidance, seed: s.seed ?? o.seed ?? 0, width: resolution, height: resolution, signal: o.signal });
      await s.onSample({ step, image: images[0] });
    },
  };
}

/** The run's settings as trainer.json records them: plain values only. */
function recordedSettings(o: PersonaliseRunOptions): Record<string, unknown> {
  const plain = Object.entries(o).filter(([key, v]) => typeof v !== 'function' && !['signal', 'model', 'images', 'samples'].includes(key));
  return { ...Object.fromEntries(plain), model: modelName(o), images: typeof o.images === 'string' ? o.images : `${o.images.length} image(s) in memory` };
}

function output(result: TrainResult, files: string[]): TrainingOutput {
  return { files, step: result.step, losses: result.losses, ...(result.checkpoint ? { checkpoint: result.checkpoint } : {}) };
}
