// Training checkpoints: everything a resumed run needs to continue exactly where it stopped.
//
//   <root>/checkpoint-000100/
//     weights.safetensors     trainable parameters by name
//     optimizer.safetensors   optimiser moments (m.<name>, v.<name>, …)
//     ema.safetensors         the EMA weights, when the run keeps them
//     trainer.json            step, RNG state, data-order position, optimiser scalars, run config
//
// A checkpoint is written into a temporary folder beside its final place and renamed there, so a
// crash or Ctrl-C mid-write never leaves a half checkpoint under a checkpoint's name.

import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors, type WritableTensor } from '../engine/index.ts';

export const CHECKPOINT_FORMAT = 1;

export interface TrainerState {
  format: number;
  /** Optimiser steps completed. */
  step: number;
  /** The training Generator's state (getState()). */
  rng: number[];
  /** Where the data order stands (epoch, permutation, index), as the data source reports it. */
  data?: unknown;
  /** Scalar entries of the optimiser state (its step count, …). */
  optimizer: Record<string, number>;
  emaUpdates?: number;
  /** What the run was started with, for the record and for resuming with the same settings. */
  config?: unknown;
}

export interface CheckpointContents {
  state: TrainerState;
  weights: Map<string, Float32Array>;
  /** Tensor entries of the optimiser state. */
  optimizer: Map<string, Float32Array>;
  ema?: Map<string, Float32Array>;
}

const NAME = /^checkpoint-(\d+)$/;

export function checkpointName(step: number): string {
  return `checkpoint-${String(step).padStart(6, '0')}`;
}

function tensors(values: ReadonlyMap<string, Float32Array>): Map<string, WritableTensor> {
  return new Map([...values].map(([name, data]) => [name, { dtype: 'F32' as const, shape: [data.length], data }]));
}

function readTensors(path: string): Map<string, Float32Array> {
  return new Map([...readSafetensors(path)].map(([name, t]) => [name, t.data as Float32Array]));
}

function writeFileSynced(path: string, text: string): void {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `checkpoint-<step>` under `root` atomically (replacing one of the same step); returns its path. */
export function saveCheckpoint(root: string, contents: CheckpointContents): string {
  mkdirSync(root, { recursive: true });
  const final = join(root, checkpointName(contents.state.step));
  const temp = `${final}.tmp-${process.pid}`;
  rmSync(temp, { recursive: true, force: true });
  mkdirSync(temp);
  writeSafetensors(join(temp, 'weights.safetensors'), tensors(contents.weights));
  writeSafetensors(join(temp, 'optimizer.safetensors'), tensors(contents.optimizer));
  if (contents.ema) writeSafetensors(join(temp, 'ema.safetensors'), tensors(contents.ema));
  writeFileSynced(join(temp, 'trainer.json'), `${JSON.stringify(contents.state, null, 2)}\n`);
  if (existsSync(final)) {
    const old = `${final}.old-${process.pid}`;
    renameSync(final, old);
    renameSync(temp, final);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameSync(temp, final);
  }
  return final;
}

export function loadCheckpoint(dir: string): CheckpointContents {
  const statePath = join(dir, 'trainer.json');
  if (!existsSync(statePath)) throw new Error(`${dir} is not a training checkpoint: it has no trainer.json`);
  const state = JSON.parse(readFileSync(statePath, 'utf8')) as TrainerState;
  if (state.format !== CHECKPOINT_FORMAT) throw new Error(`${dir}: checkpoint format ${state.format} is not supported (expected ${CHECKPOINT_FORMAT})`);
  const emaPath = join(dir, 'ema.safetensors');
  return {
    state,
    weights: readTensors(join(dir, 'weights.safetensors')),
    optimizer: readTensors(join(dir, 'optimizer.safetensors')),
    ...(existsSync(emaPath) ? { ema: readTensors(emaPath) } : {}),
  };
}

/** Complete checkpoints under `root`, oldest first. Temporary folders of interrupted writes are ignored. */
export function listCheckpoints(root: string): { step: number; path: string }[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((name) => ({ match: NAME.exec(name), name }))
    .filter(({ match, name }) => match && existsSync(join(root, name, 'trainer.json')))
    .map(({ match, name }) => ({ step: Number(match![1]), path: join(root, name) }))
    .sort((a, b) => a.step - b.step);
}

export function latestCheckpoint(root: string): string | undefined {
  return listCheckpoints(root).at(-1)?.path;
}

/** Deletes all but the newest `keep` checkpoints. */
export function pruneCheckpoints(root: string, keep: number): void {
  const all = listCheckpoints(root);
  for (const { path } of all.slice(0, Math.max(0, all.length - keep))) rmSync(path, { recursive: true, force: true });
}
