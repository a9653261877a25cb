// The generic training loop every Nuri trainer (VAE, CLIP, UNet, DreamBooth, Textual Inversion,
// LoRA) runs:
//
//   for step in [start, steps):
//     N micro-batches: feeds ← task.nextBatch(rng); loss, grads ← step graph   (grads averaged)
//     clip the global gradient norm; optimiser.step(grads, lr(step)); EMA update
//     every k steps: validation callback, checkpoint (atomic folder)
//
// All randomness (batch order, noise, timesteps, caption dropout, flips) comes from one seeded
// Generator whose state is checkpointed with the weights, the optimiser moments and the data
// position, so a resumed run continues with exactly the losses the uninterrupted run would have.
//
//   const step = await compileTrainStep({ inputs, loss, params });        // traced and compiled once
//   const task = { step, nextBatch: (rng) => feedsFor(order.next(rng), rng), dataState, loadDataState };
//   await train({ task, optimizer: new AdamW(step.params), lr: lrSchedule({ kind: 'cosine', lr, warmup, totalSteps }),
//                 steps, rng: new Generator(seed), gradAccum, maxGradNorm, checkpoint: { dir, every }, resume });

import type { Feeds, Generator, Optimizer } from '../engine/index.ts';
import { clipGradNorm } from '../engine/index.ts';
import { CHECKPOINT_FORMAT, type CheckpointContents, loadLatestIntactCheckpoint, pruneCheckpoints, saveCheckpoint } from './checkpoint.ts';
import type { EmaWeights } from './ema.ts';
import type { LrSchedule } from './lr-schedule.ts';
import type { TrainStep } from './train-step.ts';

/** What is being trained and on what: the compiled step and where its micro-batches come from. */
export interface TrainingTask {
  /** Compiled loss + gradients (compileTrainStep); its `params` are what the optimiser updates. */
  readonly step: TrainStep;
  /** Feeds for the next micro-batch of optimiser step `step` (0-based). Every random choice must be drawn from `rng`. */
  nextBatch(rng: Generator, step: number): Promise<Feeds> | Feeds;
  /** The data-order position (JSON-serialisable), saved in checkpoints. */
  dataState?(): unknown;
  loadDataState?(state: unknown): void;
}

export interface StepInfo {
  /** Optimiser steps completed (1-based after the first step). */
  step: number;
  steps: number;
  /** Mean loss over the step's micro-batches. */
  loss: number;
  /** Mean of each reported metric over the micro-batches. */
  metrics: Record<string, number>;
  lr: number;
  /** Global gradient norm before clipping (only computed when clipping). */
  gradNorm?: number;
  /** Averaged over the steps run in this session. */
  secondsPerStep: number;
  etaSeconds: number;
}

export interface CheckpointOptions {
  /** Folder holding `checkpoint-<step>/` folders. */
  dir: string;
  /** Save every N steps (besides the final and the interrupted step); 0 or absent: only those. */
  every?: number;
  /** Keep only the newest N checkpoints. */
  keep?: number;
  /** The run's settings, stored in trainer.json. */
  config?: unknown;
}

export interface TrainerOptions {
  task: TrainingTask;
  optimizer: Optimizer;
  lr: LrSchedule;
  /** Total optimiser steps (a resumed run stops at the same total). */
  steps: number;
  rng: Generator;
  /** Micro-batches whose gradients are averaged into one optimiser step (default 1). */
  gradAccum?: number;
  /** Clip the global gradient L2 norm to this. */
  maxGradNorm?: number;
  ema?: EmaWeights;
  validate?: { every: number; run(step: number): Promise<void> | void };
  checkpoint?: CheckpointOptions;
  /** Continue from the newest checkpoint in `checkpoint.dir` (a fresh start when there is none). */
  resume?: boolean;
  /** When aborted, the current step finishes, a checkpoint is saved and `train` returns. */
  signal?: AbortSignal;
  onStep?(info: StepInfo): void;
  /** Damaged checkpoints skipped on resume; `console.warn` when not given. */
  onWarning?(message: string): void;
}

export interface TrainResult {
  /** Steps completed in total (including those before a resume). */
  step: number;
  /** The step the run began at (0, or the resumed checkpoint's). */
  startStep: number;
  /** Loss of each step run in this session. */
  losses: number[];
  interrupted: boolean;
  /** The last checkpoint written, if any. */
  checkpoint?: string;
}

export async function train(options: TrainerOptions): Promise<TrainResult> {
  const { task, optimizer, rng, steps } = options;
  const accum = options.gradAccum ?? 1;
  if (!Number.isInteger(steps) || steps < 0) throw new Error(`steps must be a non-negative integer, got ${steps}`);
  if (!Number.isInteger(accum) || accum < 1) throw new Error(`gradient accumulation must be a positive integer, got ${accum}`);

  let step = 0;
  let lastCheckpoint: string | undefined;
  if (options.resume) {
    if (!options.checkpoint) throw new Error('resume needs a checkpoint folder');
    const found = loadLatestIntactCheckpoint(options.checkpoint.dir, options.onWarning ?? ((m) => console.warn(`warning: ${m}`)));
    if (found) {
      if (found.contents.state.step > steps) throw new Error(`${found.path} is at step ${found.contents.state.step}, beyond this run's ${steps} steps`);
      step = restore(options, found.contents);
      lastCheckpoint = found.path;
    }
  }
  const startStep = step;

  const save = (): string | undefined => {
    const c = options.checkpoint;
    if (!c) return undefined;
    const path = saveCheckpoint(c.dir, snapshot(options, step));
    if (c.keep) pruneCheckpoints(c.dir, c.keep);
    return path;
  };

  const losses: number[] = [];
  const began = performance.now();
  let interrupted = false;
  while (step < steps) {
    if (options.signal?.aborted) {
      interrupted = true;
      break;
    }
    let lossSum = 0;
    const metricSums: Record<string, number> = {};
    let grads: Float32Array[] | undefined;
    for (let k = 0; k < accum; k++) {
      const out = await task.step.run(await task.nextBatch(rng, step));
      if (!Number.isFinite(out.loss)) throw new Error(`training diverged: the loss is ${out.loss} at step ${step + 1}`);
      lossSum += out.loss;
      for (const [name, v] of Object.entries(out.metrics)) metricSums[name] = (metricSums[name] ?? 0) + v;
      if (!grads) grads = accum === 1 ? out.grads : out.grads.map((g) => new Float32Array(g));
      else grads.forEach((g, i) => addInto(g, out.grads[i]));
    }
    if (accum > 1) for (const g of grads!) scaleInPlace(g, 1 / accum);
    const gradNorm = options.maxGradNorm !== undefined ? clipGradNorm(grads!, options.maxGradNorm) : undefined;
    const lr = options.lr(step);
    optimizer.step(grads!, lr);
    options.ema?.update();
    step++;

    const loss = lossSum / accum;
    losses.push(loss);
    const secondsPerStep = (performance.now() - began) / 1000 / losses.length;
    const metrics = Object.fromEntries(Object.entries(metricSums).map(([k, v]) => [k, v / accum]));
    options.onStep?.({ step, steps, loss, metrics, lr, gradNorm, secondsPerStep, etaSeconds: secondsPerStep * (steps - step) });

    if (options.validate && options.validate.every > 0 && step % options.validate.every === 0) await options.validate.run(step);
    const every = options.checkpoint?.every ?? 0;
    if (every > 0 && step % every === 0 && step < steps) lastCheckpoint = save();
  }
  // The final (or interrupted) state is always saved, so `--resume` with more steps continues.
  if (options.checkpoint && (step > startStep || !lastCheckpoint)) lastCheckpoint = save();
  return { step, startStep, losses, interrupted, ...(lastCheckpoint ? { checkpoint: lastCheckpoint } : {}) };
}

function snapshot(options: TrainerOptions, step: number): CheckpointContents {
  const optimizerState = options.optimizer.state();
  const scalars: Record<string, number> = {};
  const moments = new Map<string, Float32Array>();
  for (const [k, v] of Object.entries(optimizerState)) {
    if (typeof v === 'number') scalars[k] = v;
    else moments.set(k, v);
  }
  return {
    state: {
      format: CHECKPOINT_FORMAT,
      step,
      rng: options.rng.getState(),
      ...(options.task.dataState ? { data: options.task.dataState() } : {}),
      optimizer: scalars,
      ...(options.ema ? { emaUpdates: options.ema.updates } : {}),
      ...(options.checkpoint?.config !== undefined ? { config: options.checkpoint.config } : {}),
    },
    weights: new Map(options.task.step.params.map((p) => [p.name, p.value()])),
    optimizer: moments,
    ...(options.ema ? { ema: options.ema.values() } : {}),
  };
}

/** Puts a checkpoint's weights, optimiser, RNG, data position and EMA back; returns its step. */
function restore(options: TrainerOptions, c: CheckpointContents): number {
  const missing: string[] = [];
  for (const p of options.task.step.params) {
    const v = c.weights.get(p.name);
    if (!v || v.length !== p.size) missing.push(p.name);
    else p.setValue(v);
  }
  if (missing.length) {
    throw new Error(`checkpoint does not match the model: no weights of the right size for ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`);
  }
  options.optimizer.loadState({ ...c.state.optimizer, ...Object.fromEntries(c.optimizer) });
  options.rng.setState(c.state.rng);
  if (c.state.data !== undefined) options.task.loadDataState?.(c.state.data);
  if (options.ema) {
    if (!c.ema) throw new Error('the run keeps an EMA of the weights but the checkpoint has none');
    options.ema.load(c.ema, c.state.emaUpdates ?? 0);
  }
  return c.state.step;
}

function addInto(target: Float32Array, g: Float32Array): void {
  for (let i = 0; i < target.length; i++) target[i] += g[i];
}

function scaleInPlace(g: Float32Array, s: number): void {
  for (let i = 0; i < g.length; i++) g[i] *= s;
}

/**
 * An AbortSignal raised by the first Ctrl-C (the loop then finishes its step and checkpoints); a
 * second Ctrl-C exits at once. Call `dispose` when training ends.
 */
export function interruptOnSigint(onInterrupt?: () => void): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const handler = () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
    onInterrupt?.();
  };
  process.on('SIGINT', handler);
  return { signal: controller.signal, dispose: () => process.off('SIGINT', handler) };
}
