// A model folder stored in half precision: every float32 tensor of every .safetensors file becomes
// float16 (what diffusers' `variant="fp16"` / `torch_dtype=torch.float16` checkpoints hold); every
// other file is copied. Nuri reads fp16 weights and computes in float32, so only the storage halves.
import { copyFileSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, type WritableTensor, float32ToFloat16, writeSafetensors } from '../engine/index.ts';

/** The largest finite float16: a weight beyond it would become infinite. */
const FLOAT16_MAX = 65504;

/** Rewrites one safetensors file with its float32 tensors as float16 (metadata kept). */
export function halveSafetensors(source: string, target: string): void {
  const file = SafetensorsFile.open(source);
  try {
    const tensors = new Map<string, WritableTensor>();
    for (const name of file.names()) {
      const { dtype, shape, data } = file.read(name);
      if (dtype !== 'F32') {
        tensors.set(name, { dtype, shape: [...shape], data });
        continue;
      }
      const values = data as Float32Array;
      const big = values.find((v) => !(Math.abs(v) <= FLOAT16_MAX));
      if (big !== undefined) throw new Error(`${source}: tensor ${name} holds ${big}, which float16 cannot store`);
      tensors.set(name, { dtype: 'F16', shape: [...shape], data: float32ToFloat16(values) });
    }
    writeSafetensors(target, tensors, file.metadata);
  } finally {
    file.close();
  }
}

/** Copies a folder tree, storing every safetensors file in half precision; `skip` names entries left out. */
export function copyAsHalfPrecision(source: string, target: string, skip: ReadonlySet<string> = new Set()): void {
  mkdirSync(target, { recursive: true });
  for (const name of readdirSync(source)) {
    if (skip.has(name)) continue;
    const from = join(source, name);
    const to = join(target, name);
    if (statSync(from).isDirectory()) copyAsHalfPrecision(from, to);
    else if (name.endsWith('.safetensors')) halveSafetensors(from, to);
    else copyFileSync(from, to);
  }
}
