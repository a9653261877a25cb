// Writing a fine-tuned model as a diffusers folder: the base folder's files (configs, tokenizer,
// scheduler, untouched weights) hard-linked or copied, and the weights of the changed components
// written from the models' current values. Weight files are written atomically to a new name, so
// a hard link never lets the new model's writes reach the base model's files.

import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Module } from '../engine/module.ts';
import { type WritableTensor, writeSafetensors } from '../engine/safetensors.ts';

/** Component folder → its weights file name in diffusers' layout. */
const WEIGHT_FILES: Record<string, string> = {
  unet: 'diffusion_pytorch_model.safetensors',
  vae: 'diffusion_pytorch_model.safetensors',
  text_encoder: 'model.safetensors',
};

const WEIGHT_FILE = /\.(safetensors|bin|ckpt|pt)$/;

/**
 * Copies the diffusers folder `base` to `out`, replacing each named component's weights with the
 * module's parameters (fp32). Parameters named in `skip` (e.g. added token rows) are left out.
 */
export function writeDiffusersFolder(base: string, out: string, replaced: Partial<Record<'unet' | 'text_encoder' | 'vae', Module>>, skip: (name: string) => boolean = () => false): void {
  if (!existsSync(join(base, 'model_index.json'))) throw new Error(`${base} is not a diffusers folder (no model_index.json)`);
  if (resolve(base) === resolve(out)) throw new Error('the output folder must differ from the base model folder');
  mkdirSync(out, { recursive: true });
  for (const entry of readdirSync(base, { withFileTypes: true })) {
    const from = join(base, entry.name);
    const to = join(out, entry.name);
    if (entry.isFile()) place(from, to);
    if (!entry.isDirectory()) continue;
    mkdirSync(to, { recursive: true });
    const module = replaced[entry.name as keyof typeof replaced];
    for (const name of readdirSync(from)) {
      if (module && WEIGHT_FILE.test(name)) continue; // every variant of the replaced weights goes
      if (statSync(join(from, name)).isFile()) place(join(from, name), join(to, name));
    }
    if (module) {
      const tensors = new Map<string, WritableTensor>();
      for (const p of module.parameters()) {
        if (!skip(p.name)) tensors.set(p.name, { dtype: 'F32', shape: [...p.shape], data: p.value() });
      }
      writeSafetensors(join(to, WEIGHT_FILES[entry.name]), tensors, { format: 'pt' });
    }
  }
}

function place(from: string, to: string): void {
  if (existsSync(to)) return;
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
}
