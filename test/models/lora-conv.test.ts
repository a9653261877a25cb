// LoRAs on convolutions, as LCM-LoRA ships them (kohya keys): a 3×3 down (A) [r, C_in, 3, 3] with a
// 1×1 up (B) [C_out, r, 1, 1], merged into the conv weight as B·A reshaped to [C_out, C_in, 3, 3];
// alongside linear layers outside attention (time_emb_proj).

import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadLoraFile, mergeLora } from '../../src/models/lora.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { TINY_SD } from '../fixtures.ts';
import { LCM_LORA_CONV as CONV, LCM_LORA_LINEAR as LINEAR, writeLcmStyleLora as lcmStyleLora } from '../support/lcm-lora.ts';

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
