// LoRA files that would merge NaN or Inf into the weights — rank 0 (alpha/rank = 0/0), NaN or Inf
// in a matrix or its alpha, a weight so large the product overflows — are refused with the file
// and tensor named, and a refused merge leaves the model's weights as they were.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeSafetensors, type WritableTensor } from '../../src/engine/safetensors.ts';
import { loadLoraFile, mergeLora } from '../../src/models/lora.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { TINY_SD } from '../fixtures.ts';

const MODULE = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';
const BASE = `lora_unet_${MODULE.replace(/\./g, '_')}`;

function loraFile(rank: number, change: (t: Record<string, Float32Array>) => void = () => {}): string {
  const t: Record<string, Float32Array> = {
    down: new Float32Array(rank * 32).fill(0.01),
    up: new Float32Array(32 * rank).fill(0.01),
    alpha: Float32Array.of(rank),
  };
  change(t);
  const path = join(mkdtempSync(join(tmpdir(), 'nuri-lora-')), 'lora.safetensors');
  const tensors = new Map<string, WritableTensor>([
    [`${BASE}.lora_down.weight`, { dtype: 'F32', shape: [rank, 32], data: t.down }],
    [`${BASE}.lora_up.weight`, { dtype: 'F32', shape: [32, rank], data: t.up }],
    [`${BASE}.alpha`, { dtype: 'F32', shape: [], data: t.alpha }],
  ]);
  writeSafetensors(path, tensors);
  return path;
}

describe('LoRA files with non-finite results', () => {
  const unet = loadUNet(join(TINY_SD, 'unet'));
  const models = { unet };

  it('reads a sound file', () => {
    expect(loadLoraFile(loraFile(2), models).layers).toHaveLength(1);
  });

  it('refuses rank 0 (alpha/rank would be 0/0), naming the file and tensor', () => {
    const path = loraFile(0);
    expect(() => loadLoraFile(path, models)).toThrow(new RegExp(`${path}.*${BASE}\\.lora_down\\.weight.*rank ≥ 1`));
  });

  for (const [what, value] of [['NaN', NaN], ['Infinity', Infinity]] as const) {
    it(`refuses ${what} in a matrix, naming the file and tensor`, () => {
      const path = loraFile(2, (t) => (t.up[5] = value));
      expect(() => loadLoraFile(path, models)).toThrow(new RegExp(`${path}: tensor ${BASE}\\.lora_up\\.weight holds ${what}`));
    });
    it(`refuses ${what} as alpha, naming the file and tensor`, () => {
      const path = loraFile(2, (t) => (t.alpha[0] = value));
      expect(() => loadLoraFile(path, models)).toThrow(new RegExp(`${path}: tensor ${BASE}\\.alpha holds ${what}`));
    });
  }

  it('refuses a weight whose merge overflows (1e308), leaving the weights unchanged', async () => {
    const { layers } = loadLoraFile(loraFile(2), models);
    const weight = unet.parameters().find((p) => p.name === `${MODULE}.weight`)!;
    const before = new Float32Array(weight.value());
    await expect(mergeLora(models, layers, 1e308, '--lora big.safetensors')).rejects.toThrow(/--lora big\.safetensors: merging at weight 1e\+308 makes unet down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.to_q\.weight (-?Infinity|NaN)/);
    expect(weight.value()).toEqual(before);
    await expect(mergeLora(models, layers, NaN)).rejects.toThrow(/weight NaN is not a finite number/);
  });
});
