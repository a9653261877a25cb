// LoRA: files round-trip in diffusers (PEFT) and kohya key styles and read the older diffusers
// keys; merging at weight 0 is the base model; merged and branch forms compute the same thing; a
// few training steps of the adapters alone lower the loss on a fixed batch.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Generator, SafetensorsFile, Tensor, compile, sym, writeSafetensors, type WritableTensor } from '../../src/engine/index.ts';
import { type ClipTextModel, loadClipTextModel } from '../../src/models/clip-text.ts';
import { LoraNetwork, type LoraLayerWeights, adaptableLayers, kohyaName, loadLoraFile, mergeLora } from '../../src/models/lora.ts';
import { type UNet2DConditionModel, loadUNet } from '../../src/models/unet.ts';
import { TINY_SD } from '../fixtures.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nuri-lora-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function models(): { unet: UNet2DConditionModel; textEncoder: ClipTextModel } {
  return { unet: loadUNet(join(TINY_SD, 'unet')), textEncoder: loadClipTextModel(join(TINY_SD, 'text_encoder')) };
}

/** A network whose B is non-zero too, so that it changes the model's output. */
function randomNetwork(m: ReturnType<typeof models>, seed: number, rank = 2, alpha = 3): LoraNetwork {
  const rng = new Generator(seed);
  const net = LoraNetwork.create(m, { rank, alpha, textEncoder: true }, rng);
  for (const p of net.parameters()) p.setValue(rng.randn(p.size).map((v) => v * 0.3));
  return net;
}

function sortByModule(layers: LoraLayerWeights[]): LoraLayerWeights[] {
  return [...layers].sort((a, b) => `${a.component}:${a.module}`.localeCompare(`${b.component}:${b.module}`));
}

describe('LoRA files', () => {
  it('adapts every attention projection: 4 per UNet attention, 4 per text encoder layer', () => {
    const m = models();
    expect(adaptableLayers(m.unet)).toHaveLength(4 * 2 * 16); // 16 transformer blocks, self + cross
    expect(adaptableLayers(m.textEncoder)).toHaveLength(4 * 5);
    expect(kohyaName('unet', 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0')).toBe('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0');
  });

  for (const style of ['diffusers', 'kohya'] as const) {
    it(`round-trips in ${style} key style (weights, ranks, alphas, components)`, () => {
      const m = models();
      const net = randomNetwork(m, 1);
      const path = join(dir, `${style}.safetensors`);
      net.save(path, style);
      const file = SafetensorsFile.open(path);
      const names = file.names();
      file.close();
      if (style === 'kohya') {
        expect(names).toContain('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight');
        expect(names).toContain('lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha');
      } else {
        expect(names).toContain('unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight');
        expect(names).toContain('text_encoder.text_model.encoder.layers.0.self_attn.out_proj.lora_B.weight');
      }
      const read = loadLoraFile(path, m);
      expect(read.style).toBe(style);
      expect(read.unmatched).toEqual([]);
      const before = sortByModule(net.weights());
      const after = sortByModule(read.layers);
      expect(after.map((l) => [l.component, l.module, l.rank, l.alpha])).toEqual(before.map((l) => [l.component, l.module, l.rank, l.alpha]));
      after.forEach((l, i) => {
        expect(l.down).toEqual(before[i].down);
        expect(l.up).toEqual(before[i].up);
      });
    });
  }

  it('reads the older diffusers keys (processor.to_q_lora, lora_linear_layer) with rank as alpha', () => {
    const m = models();
    const rng = new Generator(3);
    const tensors: Record<string, WritableTensor> = {
      'unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.down.weight': { dtype: 'F32', shape: [2, 64], data: rng.randn(128) },
      'unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight': { dtype: 'F32', shape: [64, 2], data: rng.randn(128) },
      'text_encoder.text_model.encoder.layers.1.self_attn.k_proj.lora_linear_layer.down.weight': { dtype: 'F32', shape: [4, 32], data: rng.randn(128) },
      'text_encoder.text_model.encoder.layers.1.self_attn.k_proj.lora_linear_layer.up.weight': { dtype: 'F32', shape: [32, 4], data: rng.randn(128) },
    };
    const path = join(dir, 'old.safetensors');
    writeSafetensors(path, tensors);
    const read = loadLoraFile(path, m);
    expect(read.style).toBe('diffusers-old');
    expect(sortByModule(read.layers).map((l) => [l.component, l.module, l.rank, l.alpha, l.inFeatures, l.outFeatures])).toEqual([
      ['text_encoder', 'text_model.encoder.layers.1.self_attn.k_proj', 4, 4, 32, 32],
      ['unet', 'mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0', 2, 2, 64, 64],
    ]);
  });

  it('reports kohya keys that name no layer of the model instead of guessing', () => {
    const m = models();
    const path = join(dir, 'stray.safetensors');
    writeSafetensors(path, { 'lora_unet_input_blocks_1_1_proj_in.alpha': { dtype: 'F32', shape: [], data: Float32Array.of(1) } });
    expect(loadLoraFile(path, m).unmatched).toEqual(['lora_unet_input_blocks_1_1_proj_in.alpha']);
  });
});

/** The UNet at 16×16 latents, batch 2, and the text encoder, as one graph: LoRA touches both. */
async function runModels(m: ReturnType<typeof models>): Promise<Float32Array> {
  const ids = Tensor.input('input_ids', [sym('B'), 77], 'int64');
  const sample = Tensor.input('sample', [sym('B'), 4, 16, 16]);
  const timestep = Tensor.input('timestep', [sym('B')]);
  const context = m.textEncoder.forward(ids).lastHiddenState;
  const graph = await compile({ inputs: [ids, sample, timestep], outputs: { noise: m.unet.forward(sample, timestep, context) } });
  const rng = new Generator(11);
  const idData = BigInt64Array.from({ length: 2 * 77 }, (_, i) => BigInt(i % 77 < 6 ? [49406, 320, 1125, 539, 320, 2368][i % 77] : 49407));
  const out = await graph.run({
    input_ids: { data: idData, shape: [2, 77] },
    sample: { data: rng.randn(2 * 4 * 16 * 16), shape: [2, 4, 16, 16] },
    timestep: { data: Float32Array.of(10, 700), shape: [2] },
  });
  return out.noise.data as Float32Array;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

describe('applying a LoRA', () => {
  it('merged at weight 0 gives exactly the base output', async () => {
    const base = await runModels(models());
    const m = models();
    mergeLora(m, randomNetwork(models(), 5).weights(), 0);
    expect(await runModels(m)).toEqual(base);
  });

  it('merged weights and the unmerged branch give the same output, and both differ from the base', async () => {
    const weights = randomNetwork(models(), 6).weights();
    const base = await runModels(models());
    const branched = models();
    LoraNetwork.attach(branched, weights, 0.7);
    const merged = models();
    mergeLora(merged, weights, 0.7);
    const a = await runModels(branched);
    const b = await runModels(merged);
    const scale = Math.max(...a.map(Math.abs));
    expect(maxAbsDiff(a, base)).toBeGreaterThan(1e-2 * scale);
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-5 * scale);
  });

  it('detaching the branches restores the base model', async () => {
    const base = await runModels(models());
    const m = models();
    randomNetwork(m, 7).detach();
    expect(await runModels(m)).toEqual(base);
  });
});
