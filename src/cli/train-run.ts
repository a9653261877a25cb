// What every `nuri train …` subcommand shares: the common flags, the progress line, and running a
// task on the library's training loop (src/training/training-run.ts) with Ctrl-C stopping it
// after the step in progress with a checkpoint saved (`--resume` continues from it).

import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { LR_SCHEDULES, type TrainResult } from '../training/index.ts';
import { type TrainingTaskRun, type TrainingProgress, type TrainingRunOptions, checkOutput, describeRun, runTrainingTask } from '../training/training-run.ts';
import type { ImageFolderDataset } from '../data/folder.ts';
import { loadImageSource } from '../training/training-images.ts';
import { interruptible } from './interrupt.ts';
import { integer, number, oneOf, stepList } from './options.ts';
import { progressBar } from './shared.ts';

/** The common flags, as commander parses them: the library's run options without the callbacks. */
export interface TrainFlags extends Omit<TrainingRunOptions, 'signal' | 'onProgress' | 'onLog'> {
  images: string;
  steps: number;
  seed: number;
  validateEvery: number;
}

/** Adds the flags every training subcommand takes; `lrHelp` replaces "(default LR)" where it depends on other flags. */
export function trainingOptions(command: Command, defaults: { lr: number; batch: number; steps?: number; lrHelp?: string }): Command {
  return command
    .requiredOption('--images <dir>', 'training images: name.png + name.txt captions, or a metadata.jsonl (file_name, text); or emoji[:settings], the emoji set')
    .requiredOption('--out <dir>', 'output folder (checkpoints go to OUT/checkpoints)')
    .option('--steps <n>', 'optimiser steps in total', integer(1), defaults.steps ?? 1000)
    .option('--lr <lr>', `peak learning rate (${defaults.lrHelp ?? `default ${learningRate(defaults.lr)}`})`, number(0))
    .option('--lr-schedule <kind>', `learning-rate schedule: ${LR_SCHEDULES.join(', ')}`, oneOf(LR_SCHEDULES), 'constant')
    .option('--warmup <n>', 'linear warm-up steps', integer(0), 0)
    .option('--lr-cycles <n,n,...>', 'warm restarts: lengths of the schedule\'s cycles (summing to --steps), each warmed up and decayed anew', stepList)
    .option('--lr-cycle-decay <f>', "each cycle's peak rate as a fraction of the one before's", number(0, 1))
    .option('--batch <b>', `images per micro-batch (default ${defaults.batch})`, integer(1, 4096))
    .option('--grad-accum <n>', 'micro-batches per optimiser step (gradients averaged)', integer(1, 4096), 1)
    .option('--resolution <r>', 'training image size in pixels (square; images are resized and centre-cropped)', integer(8, 4096))
    .option('--seed <s>', 'seed for initialisation, batch order, noise, timesteps and dropout', integer(0, 2 ** 32 - 1), 0)
    .option('--save-every <n>', 'write a checkpoint every n steps (0: only at the end)', integer(0), 500)
    .option('--validate-every <n>', 'validate every n steps (0: only at the end)', integer(0), 0)
    .option('--keep-checkpoints <n>', 'how many checkpoints to keep', integer(1), 2)
    .option('--max-grad-norm <x>', 'clip the global gradient norm to x', number(0))
    .option('--weight-decay <x>', "AdamW's decoupled weight decay", number(0), 1e-2)
    .option('--flip', 'random horizontal flips')
    .option('--resume', 'continue from the newest checkpoint in OUT/checkpoints');
}

/** 5e-6 rather than 0.000005. */
export function learningRate(lr: number): string {
  return lr < 1e-3 ? lr.toExponential() : String(lr);
}

/** Reads the training images at `resolution`, listing skipped files on stderr. */
export function loadImages(flags: TrainFlags, resolution: number, requireCaptions: boolean): Promise<ImageFolderDataset> {
  return loadImageSource(flags.images, resolution, { requireCaptions, onWarning: (m) => console.error(`warning: ${m}`) });
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/**
 * Runs a library training call with the flags, a progress bar (a log line every ~2% and at least every
 * minute when stderr is not a terminal), notes on stderr and Ctrl-C handling.
 */
export async function withTrainingProgress<T>(label: string, flags: TrainFlags, work: (o: TrainingRunOptions) => Promise<T>): Promise<T> {
  const bars = new Map<string, ReturnType<typeof progressBar>>();
  const logEvery = Math.max(1, Math.round(flags.steps / 50));
  // A resumed long run may have few of those 2% marks left: a line at least every minute as well.
  const LOG_SECONDS = 60;
  let lastLog = performance.now();
  const onProgress = (p: TrainingProgress) => {
    const name = p.phase === 'class-images' ? 'class images' : label;
    if (!bars.has(name)) {
      // A phase ends where the next begins (class images before training): close its bar first.
      for (const bar of bars.values()) bar.stop();
      bars.set(name, progressBar(name, p.total, p.phase === 'training' ? ' loss {loss} lr {lr} {rate} it/s' : ''));
    }
    if (p.phase !== 'training') return bars.get(name)!.update(p.step);
    const loss = p.loss!.toPrecision(4);
    const rate = (1 / p.secondsPerStep!).toFixed(2);
    bars.get(name)!.update(p.step, { loss, lr: p.lr!.toExponential(2), rate });
    if (!process.stderr.isTTY && (p.step % logEvery === 0 || p.step === p.total || performance.now() - lastLog >= LOG_SECONDS * 1000)) {
      lastLog = performance.now();
      const extra = Object.entries(p.metrics ?? {}).map(([k, v]) => ` ${k} ${v.toPrecision(4)}`).join('');
      console.error(`step ${p.step}/${p.total} loss ${loss}${extra} lr ${p.lr!.toExponential(2)} ${rate} it/s ETA ${duration(p.etaSeconds!)}`);
    }
  };
  const onLog = (message: string) => console.error(message);
  try {
    return await interruptible((signal) => work({ ...flags, signal, onProgress, onLog }));
  } finally {
    for (const bar of bars.values()) bar.stop();
  }
}

export interface TrainingRun extends Omit<TrainingTaskRun, 'defaultSteps' | 'validate'> {
  label: string;
  /** Run every --validate-every steps (and at the end). */
  validate?: (step: number) => Promise<void>;
}

/** `nuri train vae|clip|unet`: runs a task the command built on the library's loop. */
export async function runTraining(flags: TrainFlags, o: TrainingRun): Promise<TrainResult> {
  return withTrainingProgress(o.label, flags, async (options) => {
    checkOutput(options);
    console.error(describeRun(o.label, o.task, flags.steps, flags.batch, flags.gradAccum));
    const validate = o.validate && { every: flags.validateEvery > 0 ? flags.validateEvery : flags.steps, run: o.validate };
    return runTrainingTask(options, { ...o, defaultSteps: flags.steps, validate });
  });
}

/** A folder that must exist. */
export function mustExist(path: string, what: string): void {
  if (!existsSync(path)) throw new Error(`${what}: not found: ${path}`);
}
