// Training jobs: Textual Inversion, LoRA and DreamBooth on uploaded images, through the library's
// training calls. Each job trains its own copy of the model (training changes it: a new token,
// adapters, tuned weights), works in a temporary folder, and returns the files it made as
// artifacts, which the queue writes under the models folder: embeddings/NAME.safetensors,
// loras/NAME.safetensors, or NAME/ (a whole DreamBooth model folder). A cancelled job keeps its
// folder (with the checkpoint saved when it stopped) so that a later job can resume it.

import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { type PersonaliseRunOptions, type TrainingImage, type TrainingOutput, isAbortError, loadPipeline, trainDreamBooth, trainLora, trainTextualInversion } from '../index.ts';
import type { JobResult, RunnerContext } from './jobs.ts';
import { EMBEDDING_FOLDER, LORA_FOLDER, type ModelRegistry } from './models.ts';
import { releasePipeline } from './pipeline-cache.ts';
import { previewPng } from './runner.ts';
import type { TrainParams } from './schemas.ts';

/** Folders a training run leaves beside its result, which are not part of it. */
const SCRATCH = new Set(['checkpoints', 'class-images']);

/** Where training jobs work, one folder per job id (on the machine that runs them). */
export const TRAINING_ROOT = join(tmpdir(), 'nuri-train');

export async function runTraining(jobId: string, p: TrainParams, ctx: RunnerContext, registry: ModelRegistry): Promise<JobResult> {
  ctx.progress({ step: 0, total: 0, phase: 'loading' });
  const model = registry.model(p.model);
  const images: TrainingImage[] = await Promise.all(p.images.map(async (name, i) => ({ image: await ctx.readInput(name), caption: p.captions?.[i], name })));
  const out = join(TRAINING_ROOT, jobId);
  const resumed = p.resume !== undefined && existsSync(join(TRAINING_ROOT, p.resume));
  if (p.resume !== undefined && !resumed) throw new Error(`resume: no stopped training run ${p.resume} on this machine (it finished, failed, or ran elsewhere)`);
  mkdirSync(TRAINING_ROOT, { recursive: true });
  if (resumed) renameSync(join(TRAINING_ROOT, p.resume!), out);
  else mkdirSync(out);
  let keep = false;
  const warnings: string[] = [];
  // A full DreamBooth run copies the model folder, so it takes the path; the others a model we can free.
  const sd = p.method === 'dreambooth' && p.loraRank === undefined ? undefined : await loadPipeline(model.path, registry.loadOptions(model));
  const common: PersonaliseRunOptions = {
    model: sd ?? model.path,
    load: registry.loadOptions(model),
    images,
    out,
    steps: p.steps,
    lr: p.lr,
    lrSchedule: p.lrSchedule,
    warmup: p.warmup,
    batch: p.batch,
    gradAccum: p.gradAccum,
    resolution: p.resolution,
    seed: p.seed,
    saveEvery: 0,
    keepCheckpoints: 1,
    resume: resumed,
    maxGradNorm: p.maxGradNorm,
    weightDecay: p.weightDecay,
    flip: p.flip,
    signal: ctx.signal,
    onProgress: (s) => ctx.progress({ step: s.step, total: s.total, phase: s.phase === 'training' ? 'training' : 'sampling', loss: s.loss }),
    onLog: (m) => warnings.push(m),
    samples: p.sampleEvery === undefined ? undefined : {
      every: p.sampleEvery,
      prompt: p.samplePrompt ?? samplePrompt(p),
      steps: p.sampleSteps,
      onSample: ({ step, image }) => ctx.progress({ step, total: p.steps, phase: 'training', preview: previewPng(image, 0) }),
    },
  };
  try {
    let result: TrainingOutput;
    if (p.method === 'textual-inversion') result = await trainTextualInversion({ ...common, token: p.token, initToken: p.initToken, learnable: p.learnable });
    else if (p.method === 'lora') result = await trainLora({ ...common, rank: p.rank, alpha: p.alpha, trainTextEncoder: p.trainTextEncoder, captionDropout: p.captionDropout, keyStyle: p.keyStyle });
    else {
      result = await trainDreamBooth({
        ...common,
        instancePrompt: p.instancePrompt,
        classPrompt: p.classPrompt,
        classImages: p.classImages,
        classSteps: p.classSteps,
        priorLossWeight: p.priorLossWeight,
        trainTextEncoder: p.trainTextEncoder,
        loraRank: p.loraRank,
        loraAlpha: p.loraAlpha,
      });
    }
    const artifacts = collect(result.files[0], p);
    return { images: [], artifacts, info: { method: p.method, steps: result.step, losses: result.losses, finalLoss: result.losses.at(-1), warnings, ...(resumed ? { resumedFrom: p.resume } : {}) } };
  } catch (error) {
    keep = isAbortError(error);
    throw error;
  } finally {
    if (!keep) rmSync(out, { recursive: true, force: true });
    if (sd) await releasePipeline({ sd }).catch(() => {});
  }
}

/** What samples draw by default: the new word itself, the first caption, or the instance prompt. */
function samplePrompt(p: TrainParams): string {
  if (p.method === 'textual-inversion') return `a ${p.token}`;
  if (p.method === 'lora') return p.captions?.[0] ?? '';
  return p.instancePrompt;
}

/** The written file (or model folder, every file in it) as artifacts under the models folder. */
function collect(made: string, p: TrainParams): JobResult['artifacts'] {
  if (!statSync(made).isDirectory()) {
    const folder = p.method === 'textual-inversion' ? EMBEDDING_FOLDER : LORA_FOLDER;
    return [{ path: `${folder}/${p.name}.safetensors`, data: readFileSync(made) }];
  }
  const files: JobResult['artifacts'] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!(dir === made && SCRATCH.has(entry.name))) walk(path);
      } else files.push({ path: `${p.name}/${relative(made, path).split('\\').join('/')}`, data: readFileSync(path) });
    }
  };
  walk(made);
  return files;
}
