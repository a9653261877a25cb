// Writing trained models where the rest of Nuri (and diffusers) can load them: a component folder
// is config.json + weights as float32 safetensors under the standard file name; a pipeline is the
// base model's folder with the trained components replaced and everything else hard-linked (or
// copied across filesystems), so `nuri generate --model OUT` loads the result.

import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Parameter, writeSafetensors } from '../engine/index.ts';

/** The weights file name of each kind of component folder. */
export const WEIGHTS_FILE = { diffusers: 'diffusion_pytorch_model.safetensors', transformers: 'model.safetensors' } as const;

/** Parameter values by name (or a replacement map, e.g. EMA weights) as float32 safetensors. */
export function writeWeights(path: string, params: readonly Parameter[], values?: ReadonlyMap<string, Float32Array>): void {
  const tensors = new Map(
    params.map((p) => {
      const data = values?.get(p.name) ?? p.value();
      return [p.name, { dtype: 'F32' as const, shape: [...p.shape], data }];
    }),
  );
  writeSafetensors(path, tensors, { format: 'pt' });
}

export interface ComponentExport {
  config: unknown;
  params: readonly Parameter[];
  weightsFile: string;
  /** Values to write instead of the parameters' own (EMA weights). */
  values?: ReadonlyMap<string, Float32Array>;
}

/** Writes one component folder: config.json and its weights. */
export function writeComponent(dir: string, c: ComponentExport): void {
  mkdirSync(dir, { recursive: true });
  writeWeights(join(dir, c.weightsFile), c.params, c.values);
  const tmp = join(dir, `config.json.tmp-${process.pid}`);
  writeFileSync(tmp, `${JSON.stringify(c.config, null, 2)}\n`);
  renameSync(tmp, join(dir, 'config.json'));
}

function linkOrCopy(source: string, target: string): void {
  rmSync(target, { force: true });
  try {
    linkSync(source, target);
  } catch {
    copyFileSync(source, target);
  }
}

function mirror(source: string, target: string, skip: ReadonlySet<string>): void {
  mkdirSync(target, { recursive: true });
  for (const name of readdirSync(source)) {
    if (skip.has(name)) continue;
    const from = join(source, name);
    if (statSync(from).isDirectory()) mirror(from, join(target, name), new Set());
    else linkOrCopy(from, join(target, name));
  }
}

/**
 * `out` becomes the diffusers pipeline at `base` with each component of `replaced` (folder name →
 * export) written fresh. `out` must not be `base`: its weights are what the models read from.
 */
export function exportPipeline(base: string, out: string, replaced: Record<string, ComponentExport>): void {
  if (!existsSync(join(base, 'model_index.json'))) throw new Error(`${base} is not a diffusers pipeline folder (no model_index.json)`);
  if (existsSync(out) && realpathSync(out) === realpathSync(base)) throw new Error('the output folder must differ from the base model folder');
  mirror(resolve(base), out, new Set(Object.keys(replaced)));
  for (const [name, component] of Object.entries(replaced)) writeComponent(join(out, name), component);
}
