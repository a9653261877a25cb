// Reading a transformers CLIP component folder (config.json + model.safetensors) and binding a
// module's parameters to the checkpoint's tensors by their exact names.

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Parameter, type SafetensorsFile, bindParameters } from '../engine/index.ts';
import { readConfigFile } from './checkpoint/config-file.ts';

export type Json = Record<string, unknown>;

export function readConfigJson(dir: string): Json {
  return readConfigFile(join(dir, 'config.json'), 'config.json');
}

/**
 * The folder's safetensors weights: `model.<variant>.safetensors` when a variant is asked for,
 * else `model.safetensors`, else the fp16 variant diffusers saves with `variant="fp16"`.
 */
export function findWeightsFile(dir: string, variant?: string): string {
  const candidates = variant ? [`model.${variant}.safetensors`] : ['model.safetensors', 'model.fp16.safetensors'];
  for (const name of candidates) if (existsSync(join(dir, name))) return join(dir, name);
  const present = existsSync(dir) ? readdirSync(dir).join(', ') : 'the folder does not exist';
  const pickle = /\.(bin|pt|ckpt)\b/.test(present) ? ' (pickle checkpoints are never loaded: convert them to safetensors)' : '';
  throw new Error(`no ${candidates.join(' or ')} in ${dir}${pickle}; found: ${present}`);
}

/**
 * Binds each parameter to the tensor of the same name in `file`. One error lists every problem:
 * missing tensors, wrong shapes, and tensors the model has no place for (unless `ignored`).
 */
export function bindByName(params: readonly Parameter[], file: SafetensorsFile, what: string, ignored: (name: string) => boolean = () => false): void {
  const wanted = new Set(params.map((p) => p.name));
  const unexpected = file.names().filter((name) => !wanted.has(name) && !ignored(name));
  const lines = unexpected.slice(0, 12).map((name) => `unexpected tensor ${name} [${file.entry(name).shape.join(', ')}]`);
  if (unexpected.length > 12) lines.push(`… and ${unexpected.length - 12} more unexpected tensors`);
  try {
    bindParameters(params, (name) => (file.has(name) ? { file, tensorName: name } : undefined), `${what} from ${file.path}`);
  } catch (e) {
    if (!lines.length) throw e;
    throw new Error([(e as Error).message, ...lines].join('\n  '));
  }
  if (lines.length) throw new Error([`cannot load ${what} from ${file.path}: ${unexpected.length} unexpected tensor(s)`, ...lines].join('\n  '));
}
