// Running a training task as a library call: the settings every trainer shares (steps, learning
// rate and schedule, batch, checkpoints under OUT/checkpoints, resume), AdamW, cancellation through
// an AbortSignal (the step in progress finishes and a checkpoint is saved, so the run resumes) and
// progress callbacks. The `nuri train …` commands and the server both run training through here.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AbortError } from '../engine/abort.ts';
import { AdamW, Generator } from '../engine/index.ts';
import { latestCheckpoint } from './checkpoint.ts';
import type { EmaWeights } from './ema.ts';
import { type LrScheduleName, lrSchedule } from './lr-schedule.ts';
import { type TrainResult, type TrainingTask, train } from './trainer.ts';

/** What a training run reports: a phase's step count, and for training steps the loss. */
export interface TrainingProgress {
  /** 'class-images': DreamBooth generating its class images first; 'training': optimiser steps. */
  phase: 'class-images' | 'training';
  step: number;
  total: number;
  loss?: number;
  lr?: number;
  /** Other per-step metrics (e.g. DreamBooth's instance_loss and prior_loss). */
  metrics?: Record<string, number>;
  secondsPerStep?: number;
  etaSeconds?: number;
}

export interface TrainingRunOptions {
  /** Output folder; checkpoints go to OUT/checkpoints. */
  out: string;
  /** Optimiser steps in total (a resumed run stops at the same total). */
  steps?: number;
  /** Peak learning rate (each method has its default). */
  lr?: number;
  lrSchedule?: LrScheduleName;
  /** Warm restarts: the lengths of the schedule's cycles, summing to `steps` (lr-schedule.ts). */
  lrCycles?: number[];
  /** Each cycle's peak rate relative to the one before (default 1). */
  lrCycleDecay?: number;
  /** Linear warm-up steps. */
  warmup?: number;
  /** Images per micro-batch (default 1). */
  batch?: number;
  /** Micro-batches per optimiser step, gradients averaged (default 1). */
  gradAccum?: number;
  /** Square training size in pixels (default: the model's own). */
  resolution?: number;
  /** Seeds initialisation, batch order, noise, timesteps and dropout (default 0). */
  seed?: number;
  /** A checkpoint every n steps (0: only at the end; default 500). */
  saveEvery?: number;
  /** How many checkpoints to keep (default 2). */
  keepCheckpoints?: number;
  maxGradNorm?: number;
  /** AdamW's decoupled weight decay (default 1e-2). */
  weightDecay?: number;
  /** Random horizontal flips. */
  flip?: boolean;
  /** Continue from the newest checkpoint in OUT/checkpoints (a fresh start when there is none). */
  resume?: boolean;
  /** Stops between two steps: the checkpoint is saved, then the call rejects with an AbortError. */
  signal?: AbortSignal;
  onProgress?(progress: TrainingProgress): void;
  /** Notes and warnings (skipped images, a resume that found nothing); none are printed. */
  onLog?(message: string): void;
}

export const TRAINING_DEFAULTS = { lrSchedule: 'constant' as LrScheduleName, warmup: 0, batch: 1, gradAccum: 1, seed: 0, saveEvery: 500, keepCheckpoints: 2, weightDecay: 1e-2 };

export interface TrainingTaskRun {
  task: TrainingTask;
  /** The method's learning rate and step count when the options give none. */
  defaultLr: number;
  defaultSteps: number;
  ema?: EmaWeights;
  validate?: { every: number; run(step: number): Promise<void> | void };
  /** Stored in each checkpoint's trainer.json. */
  config: unknown;
}

/** Refuses to start over an earlier run's checkpoints unless resuming; call before any costly preparation. */
export function checkOutput(o: Pick<TrainingRunOptions, 'out' | 'resume' | 'onLog'>): string {
  const checkpointDir = join(o.out, 'checkpoints');
  const found = latestCheckpoint(checkpointDir);
  if (o.resume && !found) o.onLog?.(`note: resume found no checkpoint in ${checkpointDir}; starting from step 0`);
  if (!o.resume && found) throw new Error(`${checkpointDir} already holds checkpoints: resume that run (--resume), or choose another output folder`);
  return checkpointDir;
}

/**
 * Runs `run.task` on the shared loop with AdamW and the options' schedule. Resolves with the
 * result of a finished run; an aborted run saves its checkpoint and rejects with an AbortError
 * whose `progress` names the step and the checkpoint.
 */
export async function runTrainingTask(o: TrainingRunOptions, run: TrainingTaskRun): Promise<TrainResult> {
  const steps = o.steps ?? run.defaultSteps;
  const lr = o.lr ?? run.defaultLr;
  // A schedule that cannot be is refused before the output folder is made.
  const schedule = lrSchedule({ kind: o.lrSchedule ?? TRAINING_DEFAULTS.lrSchedule, lr, warmup: o.warmup ?? 0, totalSteps: steps, cycles: o.lrCycles, cycleDecay: o.lrCycleDecay });
  mkdirSync(o.out, { recursive: true });
  const checkpointDir = checkOutput({ out: o.out, resume: o.resume }); // the caller has logged its notes
  const params = run.task.step.params;
  const optimizer = new AdamW(params, { lr, weightDecay: o.weightDecay ?? TRAINING_DEFAULTS.weightDecay });
  const result = await train({
    task: run.task,
    optimizer,
    lr: schedule,
    steps,
    rng: new Generator(o.seed ?? TRAINING_DEFAULTS.seed),
    gradAccum: o.gradAccum ?? 1,
    maxGradNorm: o.maxGradNorm,
    ema: run.ema,
    resume: o.resume,
    signal: o.signal,
    checkpoint: { dir: checkpointDir, every: o.saveEvery ?? TRAINING_DEFAULTS.saveEvery, keep: o.keepCheckpoints ?? TRAINING_DEFAULTS.keepCheckpoints, config: run.config },
    validate: run.validate,
    ...(o.onLog ? { onWarning: (m: string) => o.onLog!(`warning: ${m}`) } : {}),
    onStep: (s) => o.onProgress?.({ phase: 'training', step: s.step, total: s.steps, loss: s.loss, lr: s.lr, metrics: s.metrics, secondsPerStep: s.secondsPerStep, etaSeconds: s.etaSeconds }),
  });
  if (result.interrupted) {
    throw new AbortError(`training was aborted at step ${result.step}; checkpoint saved in ${result.checkpoint}`, { step: result.step, checkpoint: result.checkpoint });
  }
  return result;
}

/** The run's first line: what trains and for how long. */
export function describeRun(label: string, task: TrainingTask, steps: number, batch?: number, gradAccum?: number): string {
  const count = task.step.params.reduce((a, p) => a + p.size, 0);
  return `${label}: ${count >= 1e5 ? `${(count / 1e6).toFixed(2)}M` : count.toLocaleString('en')} trainable parameters, ${steps} steps of ${batch ?? '?'}×${gradAccum ?? 1}`;
}
