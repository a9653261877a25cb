// What every `nuri train …` subcommand shares: the common flags, and running the generic loop with
// AdamW, an LR schedule, checkpoints under OUT/checkpoints, a progress line, and Ctrl-C handling
// (the first finishes the step and saves a checkpoint; `--resume` continues from it).

import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { AdamW, Generator } from '../engine/index.ts';
import { loadEmojiDataset } from '../data/emoji-dataset.ts';
import { isEmojiSource, parseEmojiSource } from '../data/emoji-source.ts';
import { ImageFolderDataset } from '../data/folder.ts';
import { type EmaWeights, LR_SCHEDULES, type LrScheduleName, type TrainingTask, type TrainResult, interruptOnSigint, latestCheckpoint, lrSchedule, train } from '../training/index.ts';
import { integer, number, oneOf } from './options.ts';
import { progressBar } from './shared.ts';

export interface TrainFlags {
  images: string;
  out: string;
  steps: number;
  lr?: number;
  lrSchedule: LrScheduleName;
  warmup: number;
  batch?: number;
  gradAccum: number;
  resolution?: number;
  seed: number;
  saveEvery: number;
  validateEvery: number;
  keepCheckpoints: number;
  maxGradNorm?: number;
  weightDecay: number;
  flip?: boolean;
  resume?: boolean;
}

/** Adds the flags every training subcommand takes. */
export function trainingOptions(command: Command, defaults: { lr: number; batch: number; steps?: number }): Command {
  return command
    .requiredOption('--images <dir>', 'training images: name.png + name.txt captions, or a metadata.jsonl (file_name, text); or emoji[:settings], the emoji set')
    .requiredOption('--out <dir>', 'output folder (checkpoints go to OUT/checkpoints)')
    .option('--steps <n>', 'optimiser steps in total', integer(1), defaults.steps ?? 1000)
    .option('--lr <lr>', `peak learning rate (default ${defaults.lr})`, number(0))
    .option('--lr-schedule <kind>', `learning-rate schedule: ${LR_SCHEDULES.join(', ')}`, oneOf(LR_SCHEDULES), 'constant')
    .option('--warmup <n>', 'linear warm-up steps', integer(0), 0)
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

/**
 * Reads the training images at `resolution`, listing skipped files on stderr. `--images emoji[:…]`
 * is the npm-installed emoji set (src/data/emoji-source.ts), each image with its caption variants.
 */
export function loadImages(flags: TrainFlags, resolution: number, requireCaptions: boolean): Promise<ImageFolderDataset> {
  if (isEmojiSource(flags.images)) return loadEmojiDataset({ ...parseEmojiSource(flags.images), size: resolution });
  return ImageFolderDataset.load(flags.images, { resolution, requireCaptions, onWarning: (m) => console.error(`warning: ${m}`) });
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export interface TrainingRun {
  label: string;
  task: TrainingTask;
  defaultLr: number;
  ema?: EmaWeights;
  validate?: (step: number) => Promise<void>;
  /** Stored in each checkpoint's trainer.json. */
  config: unknown;
}

/**
 * Runs the loop with the common flags. Returns the result; an interrupted run has saved its
 * checkpoint and the caller should skip exporting.
 */
export async function runTraining(flags: TrainFlags, o: TrainingRun): Promise<TrainResult> {
  mkdirSync(flags.out, { recursive: true });
  const checkpointDir = join(flags.out, 'checkpoints');
  if (flags.resume && !latestCheckpoint(checkpointDir)) console.error(`note: --resume found no checkpoint in ${checkpointDir}; starting from step 0`);
  if (!flags.resume && latestCheckpoint(checkpointDir)) {
    throw new Error(`${checkpointDir} already holds checkpoints: pass --resume to continue that run, or choose another --out`);
  }
  const params = o.task.step.params;
  const lr = flags.lr ?? o.defaultLr;
  const optimizer = new AdamW(params, { lr, weightDecay: flags.weightDecay });
  const schedule = lrSchedule({ kind: flags.lrSchedule, lr, warmup: flags.warmup, totalSteps: flags.steps });
  const count = params.reduce((a, p) => a + p.size, 0);
  console.error(`${o.label}: ${count >= 1e5 ? `${(count / 1e6).toFixed(2)}M` : count.toLocaleString('en')} trainable parameters, ${flags.steps} steps of ${flags.batch ?? '?'}×${flags.gradAccum}`);

  const bar = progressBar(o.label, flags.steps, ' loss {loss} lr {lr} {rate} it/s');
  const logEvery = Math.max(1, Math.round(flags.steps / 50));
  const interrupt = interruptOnSigint(() => console.error('\nstopping after this step (Ctrl-C again to quit at once)…'));
  try {
    const result = await train({
      task: o.task,
      optimizer,
      lr: schedule,
      steps: flags.steps,
      rng: new Generator(flags.seed),
      gradAccum: flags.gradAccum,
      maxGradNorm: flags.maxGradNorm,
      ema: o.ema,
      resume: flags.resume,
      signal: interrupt.signal,
      checkpoint: { dir: checkpointDir, every: flags.saveEvery, keep: flags.keepCheckpoints, config: o.config },
      validate: o.validate ? { every: flags.validateEvery > 0 ? flags.validateEvery : flags.steps, run: o.validate } : undefined,
      onStep: (s) => {
        const loss = s.loss.toPrecision(4);
        const rate = (1 / s.secondsPerStep).toFixed(2);
        bar.update(s.step, { loss, lr: s.lr.toExponential(2), rate });
        if (!process.stderr.isTTY && (s.step % logEvery === 0 || s.step === s.steps)) {
          const extra = Object.entries(s.metrics).map(([k, v]) => ` ${k} ${v.toPrecision(4)}`).join('');
          console.error(`step ${s.step}/${s.steps} loss ${loss}${extra} lr ${s.lr.toExponential(2)} ${rate} it/s ETA ${duration(s.etaSeconds)}`);
        }
      },
    });
    bar.stop();
    if (result.interrupted) console.error(`interrupted at step ${result.step}; checkpoint saved in ${result.checkpoint}. Continue with --resume.`);
    return result;
  } finally {
    bar.stop();
    interrupt.dispose();
  }
}

/** A folder that must exist. */
export function mustExist(path: string, what: string): void {
  if (!existsSync(path)) throw new Error(`${what}: not found: ${path}`);
}
