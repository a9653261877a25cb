// Training jobs: Textual Inversion, LoRA and DreamBooth on uploaded images, with the same tasks
// and loop as `nuri train …`. Each job loads its own copy of the model (training changes it: a new
// token, adapters, tuned weights), works in a temporary folder, and returns the files it made as
// artifacts, which the queue writes under the models folder: embeddings/NAME.safetensors,
// loras/NAME.safetensors, or NAME/ (a whole DreamBooth model folder).

import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ImageFolderDataset } from '../data/folder.ts';
import { AdamW, Generator } from '../engine/index.ts';
import { StableDiffusion } from '../pipelines/stable-diffusion.ts';
import { dreamBoothTask, ensureClassImages, exportDreamBooth } from '../training/dreambooth.ts';
import { type TrainingTask, lrSchedule, train } from '../training/index.ts';
import { loraTrainingTask } from '../training/lora-training.ts';
import { defaultResolution, saveLearnedEmbeds, textualInversionTask } from '../training/textual-inversion.ts';
import { abortError, throwIfAborted } from './abort.ts';
import type { JobResult, RunnerContext } from './jobs.ts';
import { EMBEDDING_FOLDER, LORA_FOLDER, type ModelRegistry } from './models.ts';
import { releasePipeline } from './pipeline-cache.ts';
import { DREAMBOOTH_LR, TRAIN_LR, type TrainParams } from './schemas.ts';
import { sniffImage } from './store.ts';

/** What a method prepared: its task, the learning rate it defaults to, and how to write its result into `out`. */
interface Prepared {
  task: TrainingTask;
  defaultLr: number;
  /** Writes the result under `out`; returns the folder or file to hand back, relative to `out`. */
  save(out: string): string;
}

export async function runTraining(p: TrainParams, ctx: RunnerContext, registry: ModelRegistry): Promise<JobResult> {
  ctx.progress({ step: 0, total: 0, phase: 'loading' });
  const model = registry.model(p.model);
  const work = mkdtempSync(join(tmpdir(), 'nuri-train-'));
  const sd = StableDiffusion.load(model.path, { defaultTokenizer: registry.defaultTokenizer });
  const warnings = [...sd.components.warnings];
  try {
    const resolution = p.resolution ?? defaultResolution(sd.components);
    const data = await trainingImages(p, ctx, join(work, 'images'), resolution, warnings);
    throwIfAborted(ctx.signal);
    const prepared = await prepare(p, ctx, sd, data, { work, resolution, modelPath: model.path, warnings });
    const lr = p.lr ?? prepared.defaultLr;
    const result = await train({
      task: prepared.task,
      optimizer: new AdamW(prepared.task.step.params, { lr, weightDecay: p.weightDecay }),
      lr: lrSchedule({ kind: p.lrSchedule, lr, warmup: p.warmup, totalSteps: p.steps }),
      steps: p.steps,
      rng: new Generator(p.seed),
      gradAccum: p.gradAccum,
      maxGradNorm: p.maxGradNorm,
      signal: ctx.signal,
      onStep: (s) => ctx.progress({ step: s.step, total: s.steps, phase: 'training', loss: s.loss }),
    });
    if (result.interrupted) throw abortError();
    ctx.progress({ step: p.steps, total: p.steps, phase: 'saving' });
    const out = join(work, 'out');
    mkdirSync(out, { recursive: true });
    const made = prepared.save(out);
    await prepared.task.step.graph.release();
    return { images: [], artifacts: collect(out, made, p), info: { method: p.method, steps: result.step, finalLoss: result.losses.at(-1), warnings } };
  } finally {
    rmSync(work, { recursive: true, force: true });
    await releasePipeline({ sd, clipSkips: new Set([undefined]) }).catch(() => {});
  }
}

/** The uploads as a folder the dataset reader knows: 1.png + 1.txt, 2.jpg + 2.txt, … */
async function trainingImages(p: TrainParams, ctx: RunnerContext, dir: string, resolution: number, warnings: string[]): Promise<ImageFolderDataset> {
  mkdirSync(dir, { recursive: true });
  for (const [i, name] of p.images.entries()) {
    const bytes = await ctx.readInput(name);
    const type = sniffImage(bytes);
    if (!type) throw new Error(`images[${i}] (${name}) is not a PNG, JPEG or WebP image`);
    writeFileSync(join(dir, `${i + 1}.${type === 'jpeg' ? 'jpg' : type}`), bytes);
    if (p.captions) writeFileSync(join(dir, `${i + 1}.txt`), p.captions[i]);
  }
  return ImageFolderDataset.load(dir, { resolution, requireCaptions: p.method === 'lora', onWarning: (m) => warnings.push(m) });
}

async function prepare(
  p: TrainParams,
  ctx: RunnerContext,
  sd: StableDiffusion,
  data: ImageFolderDataset,
  at: { work: string; resolution: number; modelPath: string; warnings: string[] },
): Promise<Prepared> {
  if (p.method === 'textual-inversion') {
    const { task, placeholder } = await textualInversionTask(sd, data, { token: p.token, initToken: p.initToken, batch: p.batch, learnable: p.learnable, flip: p.flip });
    return { task, defaultLr: TRAIN_LR['textual-inversion'], save: (out) => relative(out, saveLearnedEmbeds(out, placeholder)) };
  }
  if (p.method === 'lora') {
    const { task, network } = await loraTrainingTask(sd, data, { rank: p.rank, alpha: p.alpha, textEncoder: p.trainTextEncoder, batch: p.batch, flip: p.flip, captionDropout: p.captionDropout, seed: p.seed });
    return {
      task,
      defaultLr: TRAIN_LR.lora,
      save: (out) => {
        network.save(join(out, 'lora.safetensors'), p.keyStyle, { base_model: p.model });
        return 'lora.safetensors';
      },
    };
  }
  const lora = p.loraRank !== undefined;
  if (!lora && !statSync(at.modelPath).isDirectory()) throw new Error('params.loraRank: a full DreamBooth fine-tune needs a diffusers-folder model; give loraRank to train a LoRA');
  let classes: ImageFolderDataset | undefined;
  if (p.classPrompt !== undefined) {
    const classDir = join(at.work, 'class-images');
    await ensureClassImages(sd, classDir, {
      prompt: p.classPrompt,
      count: p.classImages,
      resolution: at.resolution,
      steps: p.classSteps,
      seed: p.seed,
      onImage: (done, total) => {
        throwIfAborted(ctx.signal);
        ctx.progress({ step: done, total, phase: 'sampling' });
      },
    });
    classes = await ImageFolderDataset.load(classDir, { resolution: at.resolution, onWarning: (m) => at.warnings.push(m) });
  }
  const { task, network } = await dreamBoothTask(sd, data, classes, {
    instancePrompt: p.instancePrompt,
    classPrompt: p.classPrompt,
    priorLossWeight: p.priorLossWeight,
    batch: p.batch,
    trainTextEncoder: p.trainTextEncoder,
    lora: lora ? { rank: p.loraRank!, alpha: p.loraAlpha, seed: p.seed } : undefined,
  });
  return {
    task,
    defaultLr: lora ? DREAMBOOTH_LR.lora : DREAMBOOTH_LR.full,
    save: (out) => relative(out, exportDreamBooth(sd, at.modelPath, join(out, 'model'), { network, trainTextEncoder: p.trainTextEncoder })),
  };
}

/** The made file (or folder, every file in it) as artifacts under the models folder. */
function collect(out: string, made: string, p: TrainParams): JobResult['artifacts'] {
  const source = join(out, made);
  if (!statSync(source).isDirectory()) {
    const folder = p.method === 'textual-inversion' ? EMBEDDING_FOLDER : LORA_FOLDER;
    return [{ path: `${folder}/${p.name}.safetensors`, data: readFileSync(source) }];
  }
  if (p.method === 'dreambooth' && p.loraRank !== undefined) {
    const file = readdirSync(source).find((f) => f.endsWith('.safetensors'));
    if (!file) throw new Error('DreamBooth-LoRA wrote no .safetensors file');
    return [{ path: `${LORA_FOLDER}/${p.name}.safetensors`, data: readFileSync(join(source, file)) }];
  }
  const files: JobResult['artifacts'] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else files.push({ path: `${p.name}/${relative(source, path).split('\\').join('/')}`, data: readFileSync(path) });
    }
  };
  walk(source);
  return files;
}
