// Carrying the default model's training from one machine to the next. The recipe takes longer than
// one sitting, and a sitting's machine is not kept: `npm run train:default -- --pack` writes what
// the work folder has achieved into a folder that is committed (RECIPE/progress), and the next
// machine's `npm run train:default` starts from it when its own work folder is empty.
//
// What travels: each finished stage's product, in half precision (the shipped model is fp16
// anyway), its marker and the cost table; and, when the UNet stage is under way, its newest
// checkpoint's weights and EMA weights in fp16. The optimiser's moments stay behind (they would
// double the size): the resumed run starts AdamW afresh (zero moments, step count 0, so its bias
// correction treats them as new) at the step and learning rate where the run stopped, with its
// RNG and data order as they were. Kept milestones and the fresh base pipeline do not travel
// (the base is rebuilt from the carried stages; the resumed UNet overwrites its weights), but the
// identity figures already measured on milestones do (identity/step-N.json), since their
// checkpoints are gone on the next machine.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../engine/index.ts';
import { latestCheckpoint, saveCheckpoint, type TrainerState } from './checkpoint.ts';
import { copyAsHalfPrecision } from './half-precision.ts';

/** The stages whose products travel, and where each product lives in the work folder. */
const CARRIED: readonly { stage: string; path: string }[] = [
  { stage: 'vae', path: 'vae' },
  { stage: 'latents', path: 'latents.json' },
  { stage: 'clip', path: 'clip' },
];
/** Training state inside a stage's folder, which never travels. */
const LEFT_BEHIND = new Set(['checkpoints', 'milestones', 'validation']);
/** Measured milestones: WORK/identity/step-N.json (scripts/train-default.ts). */
const IDENTITY = 'identity';
const isIdentityFigure = (file: string) => /^step-\d+\.json$/.test(file);

/** Copies the identity figures from one work or progress folder to another. */
function copyIdentityFigures(from: string, to: string): void {
  if (!existsSync(join(from, IDENTITY))) return;
  const files = readdirSync(join(from, IDENTITY)).filter(isIdentityFigure);
  if (files.length) mkdirSync(join(to, IDENTITY), { recursive: true });
  for (const file of files) cpSync(join(from, IDENTITY, file), join(to, IDENTITY, file));
}

export interface CarryManifest {
  packedAt: string;
  /** Finished stages in the order they finished, with their markers' contents. */
  stages: { name: string; marker: unknown }[];
  /** Wall seconds per stage over every attempt on every machine. */
  costs: Record<string, number>;
  /** The UNet stage's step when packed, if it was under way. */
  unetStep?: number;
}

const readJson = <T>(path: string) => JSON.parse(readFileSync(path, 'utf8')) as T;
const writeJson = (path: string, value: unknown) => writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);

/** Writes `progress` afresh from the work folder; returns what it holds. */
export function packProgress(work: string, progress: string): CarryManifest {
  const stagesDir = join(work, 'stages');
  const finished = CARRIED.filter(({ stage }) => existsSync(join(stagesDir, `${stage}.json`)) && existsSync(join(work, stage === 'latents' ? 'latents.json' : stage)))
    .map((c) => ({ ...c, at: statSync(join(stagesDir, `${c.stage}.json`)).mtimeMs }))
    .sort((a, b) => a.at - b.at);
  rmSync(progress, { recursive: true, force: true });
  mkdirSync(progress, { recursive: true });
  for (const { path } of finished) {
    const from = join(work, path);
    if (statSync(from).isDirectory()) copyAsHalfPrecision(from, join(progress, path), LEFT_BEHIND);
    else cpSync(from, join(progress, path));
  }
  const manifest: CarryManifest = {
    packedAt: new Date().toISOString(),
    stages: finished.map(({ stage }) => ({ name: stage, marker: readJson(join(stagesDir, `${stage}.json`)) })),
    costs: existsSync(join(work, 'costs.json')) ? readJson(join(work, 'costs.json')) : {},
  };
  const newest = latestCheckpoint(join(work, 'unet', 'checkpoints'));
  if (newest) {
    const target = join(progress, 'unet-checkpoint');
    copyAsHalfPrecision(newest, target, new Set(['optimizer.safetensors']));
    const state = readJson<TrainerState>(join(target, 'trainer.json'));
    // The hashes were of the float32 files; unpacking writes the checkpoint anew with its own.
    delete state.sha256;
    writeJson(join(target, 'trainer.json'), state);
    manifest.unetStep = state.step;
  }
  copyIdentityFigures(work, progress);
  writeJson(join(progress, 'manifest.json'), manifest);
  return manifest;
}

/**
 * Fills an empty work folder from `progress`: the stage products, their markers (with their
 * finishing order kept in the files' times, which the recipe compares), the cost table and the
 * UNet checkpoint. With `stagesOnly`, only the finished stages and their costs: how a recipe that
 * trains another UNet on the same VAE and text encoder takes them from another recipe's progress.
 * Returns what it carried in, or undefined when there is nothing to carry in.
 */
export function unpackProgress(progress: string, work: string, { stagesOnly = false } = {}): CarryManifest | undefined {
  const manifestPath = join(progress, 'manifest.json');
  if (!existsSync(manifestPath) || existsSync(join(work, 'stages'))) return undefined;
  const packed = readJson<CarryManifest>(manifestPath);
  const manifest: CarryManifest = stagesOnly
    ? { packedAt: packed.packedAt, stages: packed.stages, costs: Object.fromEntries(packed.stages.flatMap(({ name }) => (name in packed.costs ? [[name, packed.costs[name]]] : []))) }
    : packed;
  mkdirSync(join(work, 'stages'), { recursive: true });
  const base = Date.now() / 1000 - manifest.stages.length - 10;
  manifest.stages.forEach(({ name, marker }, i) => {
    const path = CARRIED.find((c) => c.stage === name)?.path;
    if (!path) throw new Error(`${manifestPath}: stage "${name}" is not one that travels`);
    cpSync(join(progress, path), join(work, path), { recursive: true });
    const markerPath = join(work, 'stages', `${name}.json`);
    writeJson(markerPath, marker);
    utimesSync(markerPath, base + i, base + i);
  });
  writeJson(join(work, 'costs.json'), manifest.costs);
  if (stagesOnly) return manifest;
  copyIdentityFigures(progress, work);
  const carried = join(progress, 'unet-checkpoint');
  if (manifest.unetStep !== undefined && existsSync(carried)) {
    const state = readJson<TrainerState>(join(carried, 'trainer.json'));
    const float32 = (file: string) => {
      const f = SafetensorsFile.open(join(carried, file));
      try {
        return new Map(f.names().map((name) => [name, f.readFloat32(name)]));
      } finally {
        f.close();
      }
    };
    const weights = float32('weights.safetensors');
    const ema = existsSync(join(carried, 'ema.safetensors')) ? float32('ema.safetensors') : undefined;
    // AdamW afresh: zero moments at step count 0 (see the top of this file).
    const optimizer = new Map<string, Float32Array>();
    for (const [name, value] of weights) {
      optimizer.set(`m.${name}`, new Float32Array(value.length));
      optimizer.set(`v.${name}`, new Float32Array(value.length));
    }
    saveCheckpoint(join(work, 'unet', 'checkpoints'), { state: { ...state, optimizer: { ...state.optimizer, step: 0 } }, weights, optimizer, ...(ema ? { ema } : {}) });
  }
  return manifest;
}

/** Lists what a progress folder holds, for the log. */
export function describeProgress(manifest: CarryManifest): string {
  const stages = manifest.stages.map((s) => s.name).join(', ') || 'no finished stage';
  return `${stages}${manifest.unetStep !== undefined ? `; UNet at step ${manifest.unetStep}` : ''} (packed ${manifest.packedAt})`;
}
