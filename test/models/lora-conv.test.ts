// LoRAs on convolutions, as LCM-LoRA ships them (kohya keys): a 3×3 down (A) [r, C_in, 3, 3] with a
// 1×1 up (B) [C_out, r, 1, 1], merged into the conv weight as B·A reshaped to [C_out, C_in, 3, 3];
// alongside linear layers outside attention (time_emb_proj).

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Generator } from '../../src/engine/random.ts';
import { writeSafetensors, type WritableTensor } from '../../src/engine/safetensors.ts';
import { kohyaName, loadLoraFile, mergeLora } from '../../src/models/lora.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { TINY_SD } from '../fixtures.ts';

const CONV = 'down_blocks.0.resnets.0.conv1'; // [32, 32, 3, 3] in tiny-sd
const LINEAR = 'down_blocks.0.resnets.0.time_emb_proj'; // [32, 128]

function lcmStyleLora(downConvShape: number[] = [2, 32, 3, 3], upConvShape: number[] = [32, 2, 1, 1]): { path: string; down: Float32Array; up: Float32Array; linDown: Float32Array; linUp: Float32Array } {
  const g = new Generator(3);
  const down = g.randn(downConvShape.reduce((a, b) => a * b, 1));
  const up = g.randn(upConvShape.reduce((a, b) => a * b, 1));
  const linDown = g.randn(2 * 128);
  const linUp = g.randn(32 * 2);
  const conv = kohyaName('unet', CONV);
  const linear = kohyaName('unet', LINEAR);
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

/** W + m·B·A for B [out, r], A [r, inner], in double. */
function expectedMerge(w: Float32Array, up: Float32Array, down: Float32Array, out: number, rank: number, m: number): Float64Array {
  const inner = down.length / rank;
  const result = Float64Array.from(w);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inner; i++) {
      let sum = 0;
      for (let r = 0; r < rank; r++) sum += up[o * rank + r]! * down[r * inner + i]!;
      result[o * inner + i]! += m * sum;
    }
  }
  return result;
}

describe('conv LoRA (LCM-LoRA’s resnet convs)', () => {
  it('merges a 3×3 down with a 1×1 up into the conv weight, and a time_emb_proj linear beside it', async () => {
    const unet = loadUNet(join(TINY_SD, 'unet'));
    const lora = lcmStyleLora();
    const { layers, style } = loadLoraFile(lora.path, { unet });
    expect(style).toBe('kohya');
    expect(layers.find((l) => l.module === CONV)).toMatchObject({ rank: 2, inFeatures: 32 * 9, outFeatures: 32, alpha: 1 });
    const weight = (name: string) => unet.parameters().find((p) => p.name === `${name}.weight`)!;
    const convBefore = new Float32Array(weight(CONV).value());
    const linearBefore = new Float32Array(weight(LINEAR).value());
    expect(weight(CONV).shape).toEqual([32, 32, 3, 3]);

    await mergeLora({ unet }, layers, 0.5);
    const conv = expectedMerge(convBefore, lora.up, lora.down, 32, 2, 0.5 * (1 / 2));
    const linear = expectedMerge(linearBefore, lora.linUp, lora.linDown, 32, 2, 0.5 * (1 / 2));
    const maxDiff = (a: Float32Array, b: Float64Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
    expect(maxDiff(weight(CONV).value(), conv)).toBeLessThan(1e-5);
    expect(maxDiff(weight(LINEAR).value(), linear)).toBeLessThan(1e-5);
    expect(maxDiff(weight(CONV).value(), Float64Array.from(convBefore))).toBeGreaterThan(0.01);
  });

  it('refuses an up (B) with a kernel, or a tensor of rank 5, naming the file and layer', () => {
    const unet = loadUNet(join(TINY_SD, 'unet'));
    const where = (path: string) => `LoRA file ${path}: layer unet ${CONV}`;
    const kernelUp = lcmStyleLora([2, 32, 3, 3], [32, 2, 3, 3]).path;
    expect(() => loadLoraFile(kernelUp, { unet })).toThrow(`${where(kernelUp)}: up (B) has shape [32, 2, 3, 3]; expected a linear [out, in] or conv [out, in, k, k] LoRA with a 1×1 up (B)`);
    const fiveD = lcmStyleLora([2, 32, 3, 3, 1]).path;
    expect(() => loadLoraFile(fiveD, { unet })).toThrow(`${where(fiveD)}: down (A) has shape [2, 32, 3, 3, 1]`);
  });
});
