// Training checkpoints: everything a resumed run needs to continue exactly where it stopped.
//
//   <root>/checkpoint-000100/
//     weights.safetensors     trainable parameters by name
//     optimizer.safetensors   optimiser moments (m.<name>, v.<name>, …)
//     ema.safetensors         the EMA weights, when the run keeps them
//     trainer.json            step, RNG state, data-order position, optimiser scalars, run config
//
// A checkpoint is written into a temporary folder beside its final place and renamed there, so a
// crash or Ctrl-C mid-write never leaves a half checkpoint under a checkpoint's name; the temporary
// folders of killed writers are removed by the next save. trainer.json records the SHA-256 of each
// tensor file, so a damaged checkpoint (a flipped bit, a truncated file) is recognised on resume,
// and resuming falls back to the newest intact one, saying which.

import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors, type WritableTensor } from '../engine/index.ts';
import { removeStaleTemps } from '../engine/stale-temp.ts';

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
  /** SHA-256 (hex) of each tensor file, by file name; absent in checkpoints written before it was kept. */
  sha256?: Record<string, string>;
}

export interface CheckpointContents {
  state: TrainerState;
  weights: Map<string, Float32Array>;
  /** Tensor entries of the optimiser state. */
  optimizer: Map<string, Float32Array>;
  ema?: Map<string, Float32Array>;
}

const NAME = /^checkpoint-(\d+)$/;
/** Temporary folders of interrupted writes: `checkpoint-<step>.tmp-<pid>` and `.old-<pid>`. */
const STALE_TEMP = /^checkpoint-\d+\.(?:tmp|old)-(\d+)$/;

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
  removeStaleTemps(root, STALE_TEMP);
  const files: [string, ReadonlyMap<string, Float32Array> | undefined][] = [
    ['weights.safetensors', contents.weights],
    ['optimizer.safetensors', contents.optimizer],
    ['ema.safetensors', contents.ema],
  ];
  const sha256: Record<string, string> = {};
  for (const [name, values] of files) {
    if (!values) continue;
    writeSafetensors(join(temp, name), tensors(values));
    sha256[name] = hashFile(join(temp, name));
  }
  writeFileSynced(join(temp, 'trainer.json'), `${JSON.stringify({ ...contents.state, sha256 }, null, 2)}\n`);
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

/** Reads a checkpoint, refusing (naming the file) a trainer.json that does not fit its folder or a tensor file whose hash differs. */
export function loadCheckpoint(dir: string): CheckpointContents {
  const statePath = join(dir, 'trainer.json');
  if (!existsSync(statePath)) throw new Error(`${dir} is not a training checkpoint: it has no trainer.json`);
  const state = readState(statePath, dir);
  const emaPath = join(dir, 'ema.safetensors');
  for (const [name, expected] of Object.entries(state.sha256 ?? {})) {
    const path = join(dir, name);
    if (!existsSync(path)) throw new Error(`${path} is missing (${statePath} lists it)`);
    if (hashFile(path) !== expected) throw new Error(`${path} is damaged: its SHA-256 differs from the one ${statePath} recorded when it was written`);
  }
  return {
    state,
    weights: readTensors(join(dir, 'weights.safetensors')),
    optimizer: readTensors(join(dir, 'optimizer.safetensors')),
    ...(existsSync(emaPath) ? { ema: readTensors(emaPath) } : {}),
  };
}

/** trainer.json, checked field by field: a step that is not the folder's would resume at the wrong place. */
function readState(path: string, dir: string): TrainerState {
  let state: TrainerState;
  try {
    state = JSON.parse(readFileSync(path, 'utf8')) as TrainerState;
  } catch (e) {
    throw new Error(`${path} is not valid JSON (${(e as Error).message})`);
  }
  const fail = (what: string): never => {
    throw new Error(`${path}: ${what}`);
  };
  if (typeof state !== 'object' || state === null || Array.isArray(state)) fail('must hold a JSON object');
  if (state.format !== CHECKPOINT_FORMAT) fail(`checkpoint format ${JSON.stringify(state.format)} is not supported (expected ${CHECKPOINT_FORMAT})`);
  const folderStep = NAME.exec(dir.split(/[\\/]/).filter(Boolean).at(-1) ?? '')?.[1];
  if (!Number.isSafeInteger(state.step) || state.step < 0) fail(`"step" must be a non-negative integer, got ${JSON.stringify(state.step)}`);
  if (folderStep !== undefined && Number(folderStep) !== state.step) fail(`"step" is ${state.step} but the folder is the checkpoint of step ${Number(folderStep)}`);
  if (!Array.isArray(state.rng) || !state.rng.every((x) => Number.isInteger(x))) fail('"rng" must be a list of integers');
  if (typeof state.optimizer !== 'object' || state.optimizer === null || !Object.values(state.optimizer).every(Number.isFinite)) fail('"optimizer" must map names to finite numbers');
  if (state.sha256 !== undefined && (typeof state.sha256 !== 'object' || !Object.values(state.sha256 ?? {}).every((h) => typeof h === 'string'))) fail('"sha256" must map file names to hex digests');
  return state;
}

/** SHA-256 of a file, read in chunks (a full UNet's weights do not fit one Buffer). */
function hashFile(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const chunk = Buffer.allocUnsafe(1 << 22);
    for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; ) hash.update(chunk.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * The newest checkpoint under `root` that loads intact, and what was wrong with any newer one
 * (reported through `onWarning`, so the user knows which step the run really resumes from).
 */
export function loadLatestIntactCheckpoint(root: string, onWarning: (message: string) => void): { path: string; contents: CheckpointContents } | undefined {
  const all = listCheckpoints(root).reverse();
  for (const [i, { path }] of all.entries()) {
    try {
      const contents = loadCheckpoint(path);
      return { path, contents };
    } catch (e) {
      const next = all[i + 1]?.path;
      onWarning(`${(e as Error).message}; ${next ? `falling back to the previous checkpoint ${next}` : 'no older checkpoint to fall back to'}`);
    }
  }
  if (all.length) throw new Error(`no intact checkpoint in ${root}: every one of its ${all.length} checkpoint(s) is damaged (see the warnings above)`);
  return undefined;
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
