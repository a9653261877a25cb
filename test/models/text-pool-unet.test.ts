// UNets whose config says addition_embed_type "text" (diffusers' TextTimeEmbedding): the caption's
// states pooled by attention and added to the time embedding. diffusers recorded no such model, so
// the pooled vector is checked against its formula evaluated in float64, and the UNet against the
// plain one by algebra: the embedding is added to time_embedding's output, so it equals the plain
// UNet with time_embedding.linear_2's bias moved by the pooled vector of that row's states.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Generator, writeSafetensors } from '../../src/engine/index.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { parseUNetConfig } from '../../src/models/checkpoint/unet-config.ts';
import { TextPoolEmbedding } from '../../src/models/text-pool-embedding.ts';
import { UNet2DConditionModel } from '../../src/models/unet.ts';
import { compileUNet } from '../../src/pipelines/stable-diffusion.ts';
import { startFromTrained } from '../../src/training/default-model.ts';
import { writeWeights } from '../../src/training/export.ts';
import { gradCheck } from '../engine/helpers.ts';
import { TINY_SD } from '../fixtures.ts';

const HEADS = 4;
const TOKENS = 77;

describe('addition_embed_type "text" in a UNet config', () => {
  const base = { block_out_channels: [32, 64], down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'], cross_attention_dim: 32 };

  it("reads its head count, diffusers' 64 when absent", () => {
    expect(parseUNetConfig({ ...base, addition_embed_type: 'text', addition_embed_type_num_heads: 4 }).addition_embed_type_num_heads).toBe(4);
    const defaulted = parseUNetConfig({ ...base, cross_attention_dim: 128, addition_embed_type: 'text' });
    expect([defaulted.addition_embed_type, defaulted.addition_embed_type_num_heads]).toEqual(['text', 64]);
  });

  it('refuses a head count that does not divide the text width, and per-block text widths', () => {
    expect(() => parseUNetConfig({ ...base, addition_embed_type: 'text', addition_embed_type_num_heads: 5 })).toThrow(/"addition_embed_type_num_heads" must be a divisor of "cross_attention_dim" 32, got 5/);
    expect(() => parseUNetConfig({ ...base, cross_attention_dim: [32, 64], addition_embed_type: 'text', addition_embed_type_num_heads: 4 })).toThrow(/"cross_attention_dim" must be the same for every block/);
    expect(() => parseUNetConfig({ ...base, addition_embed_type: 'image' })).toThrow(/addition_embed_type/);
  });

  it("names its weights as diffusers' TextTimeEmbedding does, under add_embedding", () => {
    const unet = new UNet2DConditionModel(parseUNetConfig({ ...base, addition_embed_type: 'text', addition_embed_type_num_heads: HEADS }));
    const added = unet.parameters().filter((p) => p.name.startsWith('add_embedding.'));
    expect(Object.fromEntries(added.map((p) => [p.name, p.shape]))).toEqual({
      'add_embedding.norm1.weight': [32],
      'add_embedding.norm1.bias': [32],
      'add_embedding.pool.positional_embedding': [1, 32],
      'add_embedding.pool.q_proj.weight': [32, 32],
      'add_embedding.pool.q_proj.bias': [32],
      'add_embedding.pool.k_proj.weight': [32, 32],
      'add_embedding.pool.k_proj.bias': [32],
      'add_embedding.pool.v_proj.weight': [32, 32],
      'add_embedding.pool.v_proj.bias': [32],
      'add_embedding.proj.weight': [128, 32],
      'add_embedding.proj.bias': [128],
      'add_embedding.norm2.weight': [128],
      'add_embedding.norm2.bias': [128],
    });
    expect(unet.add_embedding).toBeUndefined(); // not SDXL: no text_embeds / time_ids inputs
  });
});

/** LayerNorm over the last axis of rows of width `w`, float64. */
function layerNorm(x: number[], w: number, weight: Float32Array, bias: Float32Array): number[] {
  const out: number[] = [];
  for (let r = 0; r < x.length / w; r++) {
    const row = x.slice(r * w, (r + 1) * w);
    const mu = row.reduce((s, v) => s + v, 0) / w;
    const variance = row.reduce((s, v) => s + (v - mu) ** 2, 0) / w;
    row.forEach((v, i) => out.push(((v - mu) / Math.sqrt(variance + 1e-5)) * weight[i] + bias[i]));
  }
  return out;
}

/** y = W·x + b for one vector, float64. */
function linear(x: readonly number[], weight: Float32Array, bias: Float32Array): number[] {
  return Array.from(bias, (b, o) => x.reduce((s, v, i) => s + weight[o * x.length + i] * v, b));
}

/** diffusers' TextTimeEmbedding of one row of states [L, C], evaluated in float64 from the UNet's weights. */
function pooledReference(unet: UNet2DConditionModel, states: Float32Array, width: number): number[] {
  const e = unet.text_pool_embedding!;
  const x = layerNorm(Array.from(states), width, e.norm1.weight.value(), e.norm1.bias!.value());
  const length = x.length / width;
  const position = e.pool.positional_embedding.value();
  const query = Array.from({ length: width }, (_, c) => {
    let s = 0;
    for (let l = 0; l < length; l++) s += x[l * width + c];
    return s / length + position[c];
  });
  const rows = [query, ...Array.from({ length }, (_, l) => x.slice(l * width, (l + 1) * width))];
  const q = linear(query, e.pool.q_proj.weight.value(), e.pool.q_proj.bias!.value());
  const k = rows.map((r) => linear(r, e.pool.k_proj.weight.value(), e.pool.k_proj.bias!.value()));
  const v = rows.map((r) => linear(r, e.pool.v_proj.weight.value(), e.pool.v_proj.bias!.value()));
  const d = width / HEADS;
  const pooled = new Array<number>(width).fill(0);
  for (let h = 0; h < HEADS; h++) {
    const scores = k.map((kr) => {
      let s = 0;
      for (let i = h * d; i < (h + 1) * d; i++) s += q[i] * kr[i];
      return s / Math.sqrt(d);
    });
    const top = Math.max(...scores);
    const weights = scores.map((s) => Math.exp(s - top));
    const total = weights.reduce((s, w) => s + w, 0);
    for (let i = h * d; i < (h + 1) * d; i++) pooled[i] = v.reduce((s, vr, j) => s + (weights[j] / total) * vr[i], 0);
  }
  const projected = linear(pooled, e.proj.weight.value(), e.proj.bias!.value());
  return layerNorm(projected, projected.length, e.norm2.weight.value(), e.norm2.bias!.value());
}

describe('a UNet with the pooled caption in its time embedding', () => {
  const plain = loadUNet(join(TINY_SD, 'unet'));
  const width = plain.config.cross_attention_dim[0];
  const withText = new UNet2DConditionModel({ ...plain.config, addition_embed_type: 'text', addition_embed_type_num_heads: HEADS });
  withText.init(new Generator(3));
  const byName = new Map(plain.parameters().map((p) => [p.name, p]));
  for (const p of withText.parameters()) if (byName.has(p.name)) p.source = byName.get(p.name)!.source;
  // LayerNorm starts at 1 and 0; other values make the check see the affine part too.
  const g = new Generator(4);
  for (const norm of [withText.text_pool_embedding!.norm1, withText.text_pool_embedding!.norm2]) {
    norm.weight.setValue(g.randn(norm.weight.size).map((v) => 1 + 0.2 * v));
    norm.bias!.setValue(g.randn(norm.bias!.size).map((v) => 0.1 * v));
  }

  const states = new Generator(11).randn(2 * TOKENS * width);
  const feeds = {
    sample: { data: new Generator(12).randn(2 * 4 * 64), shape: [2, 4, 8, 8] },
    timestep: { data: Float32Array.of(999, 259), shape: [2] },
    encoder_hidden_states: { data: states, shape: [2, TOKENS, width] },
  };

  async function predict(unet: UNet2DConditionModel): Promise<Float32Array> {
    const graph = await compileUNet(unet, [TOKENS, width], {});
    const out = await graph.run(feeds);
    await graph.release();
    return out.noise_pred.data as Float32Array;
  }

  /** The plain UNet's weights with time_embedding.linear_2's bias moved by `shift`. */
  function shifted(shift: readonly number[]): UNet2DConditionModel {
    const unet = new UNet2DConditionModel(plain.config);
    for (const p of unet.parameters()) p.source = byName.get(p.name)!.source;
    const bias = plain.time_embedding.linear_2.bias!.value();
    unet.time_embedding.linear_2.bias!.setValue(bias.map((b, i) => b + shift[i]));
    return unet;
  }

  const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

  it('predicts, row by row, what the plain UNet does with linear_2.bias + the pooled vector of that row', async () => {
    const got = await predict(withText);
    const rowSize = got.length / 2;
    for (const row of [0, 1]) {
      const pooled = pooledReference(withText, states.subarray(row * TOKENS * width, (row + 1) * TOKENS * width), width);
      const expected = (await predict(shifted(pooled))).subarray(row * rowSize, (row + 1) * rowSize);
      expect(maxDiff(got.subarray(row * rowSize, (row + 1) * rowSize), expected)).toBeLessThan(1e-4);
    }
    // and the pooled caption counts: without it the prediction differs
    expect(maxDiff(got, await predict(plain))).toBeGreaterThan(1e-3);
  });

  describe("started from a trained UNet without it (the default model's recipe, training.json's unetFrom)", () => {
    const trained = join(TINY_SD, 'unet', 'diffusion_pytorch_model.safetensors');
    const fresh = () => {
      const unet = new UNet2DConditionModel({ ...plain.config, addition_embed_type: 'text', addition_embed_type_num_heads: HEADS });
      unet.init(new Generator(5));
      return unet;
    };

    it('draws what the trained UNet draws, and the pooled caption can still grow', async () => {
      const expected = await predict(plain);
      // A training checkpoint's file holds the same tensors flat.
      const flat = join(mkdtempSync(join(tmpdir(), 'nuri-unet-from-')), 'weights.safetensors');
      writeSafetensors(flat, new Map(plain.parameters().map((p) => [p.name, { dtype: 'F32' as const, shape: [p.size], data: p.value() }])));
      for (const file of [flat, trained]) {
        const started = fresh();
        startFromTrained(started, file);
        expect(maxDiff(await predict(started), expected)).toBeLessThan(1e-6);
      }
      const started = fresh();
      startFromTrained(started, trained);
      // Its last LayerNorm's scale is zero but not stuck: moving it moves the prediction.
      const scale = started.text_pool_embedding!.norm2.weight;
      scale.setValue(new Float32Array(scale.size).fill(0.01));
      expect(maxDiff(await predict(started), expected)).toBeGreaterThan(1e-5);
    });

    it('refuses weights of another shape, or that lack more than the pooled caption, naming the tensor', () => {
      const dir = mkdtempSync(join(tmpdir(), 'nuri-unet-from-'));
      const narrower = new UNet2DConditionModel({ ...plain.config, block_out_channels: [32, 32, 32, 96] });
      narrower.init(new Generator(1));
      writeWeights(join(dir, 'narrower.safetensors'), narrower.parameters());
      expect(() => startFromTrained(fresh(), join(dir, 'narrower.safetensors'))).toThrow(/narrower\.safetensors: \S+ is \[96, .*the UNet of unet\.json has \[64/);
      writeWeights(join(dir, 'partial.safetensors'), plain.parameters().filter((p) => p.name !== 'conv_in.weight'));
      expect(() => startFromTrained(fresh(), join(dir, 'partial.safetensors'))).toThrow(/lacks 1 tensors of the UNet of unet\.json, e\.g\. conv_in\.weight/);
      expect(() => startFromTrained(fresh(), join(dir, 'none.safetensors'))).toThrow(/no such weights file: .*none\.safetensors/);
    });
  });
});

describe('TextPoolEmbedding', () => {
  it('has gradients, for the states and every weight, that match finite differences (so `nuri train unet` trains it)', async () => {
    const module = new TextPoolEmbedding('add_embedding', 8, 12, 2);
    module.init(new Generator(6));
    await gradCheck((states) => module.forward(states), [{ shape: [2, 5, 8] }], { params: module.parameters(), maxCoords: 24 });
  });
});
