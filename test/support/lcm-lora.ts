// A LoRA for tiny-sd shaped like LCM-LoRA (kohya keys, with alphas): a 3×3 conv of a resnet
// (down [r, C_in, 3, 3], up [C_out, r, 1, 1]) and the resnet's time_emb_proj (linear).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Generator } from '../../src/engine/random.ts';
import { writeSafetensors, type WritableTensor } from '../../src/engine/safetensors.ts';
import { kohyaName } from '../../src/models/lora.ts';

export const LCM_LORA_CONV = 'down_blocks.0.resnets.0.conv1'; // [32, 32, 3, 3] in tiny-sd
export const LCM_LORA_LINEAR = 'down_blocks.0.resnets.0.time_emb_proj'; // [32, 128]

export interface LcmStyleLora {
  path: string;
  /** The conv pair and the linear pair, as written (rank 2, alpha 1). */
  down: Float32Array;
  up: Float32Array;
  linDown: Float32Array;
  linUp: Float32Array;
}

export function writeLcmStyleLora(downConvShape: number[] = [2, 32, 3, 3], upConvShape: number[] = [32, 2, 1, 1]): LcmStyleLora {
  const g = new Generator(3);
  const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  const down = g.randn(size(downConvShape));
  const up = g.randn(size(upConvShape));
  const linDown = g.randn(2 * 128);
  const linUp = g.randn(32 * 2);
  const conv = kohyaName('unet', LCM_LORA_CONV);
  const linear = kohyaName('unet', LCM_LORA_LINEAR);
  const tensors = new Map<string, WritableTensor>([
    [`${conv}.lora_down.weight`, { dtype: 'F32', shape: downConvShape, data: down }],
    [`${conv}.lora_up.weight`, { dtype: 'F32', shape: upConvShape, data: up }],
    [`${conv}.alpha`, { dtype: 'F32', shape: [], data: Float32Array.of(1) }],
    [`${linear}.lora_down.weight`, { dtype: 'F32', shape: [2, 128], data: linDown }],
    [`${linear}.lora_up.weight`, { dtype: 'F32', shape: [32, 2], data: linUp }],
    [`${linear}.alpha`, { dtype: 'F32', shape: [], data: Float32Array.of(1) }],
  ]);
  const path = join(mkdtempSync(join(tmpdir(), 'nuri-lora-')), 'lcm.safetensors');
  writeSafetensors(path, tensors);
  return { path, down, up, linDown, linUp };
}
