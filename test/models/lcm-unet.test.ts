// LCM-distilled UNets (config time_cond_proj_dim): the guidance-scale embedding against its formula
// evaluated in float64, and the UNet's cond_proj path against the plain UNet by algebra, since
// diffusers recorded no such model: a zero projection changes nothing, and a projection P equals the
// plain UNet with time_embedding.linear_1's bias moved by W₁·P·e (linear_1(x + P·e) = W₁x + W₁P·e + b₁).
// Single files name the projection's tensor two ways; both load.

import { join } from 'node:path';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { type CompiledGraph, Generator, Tensor } from '../../src/engine/index.ts';
import { readSafetensors, writeSafetensors } from '../../src/engine/safetensors.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { guidanceScaleEmbedding } from '../../src/models/guidance-embedding.ts';
import { loadSingleFile } from '../../src/models/single-file.ts';
import { UNet2DConditionModel } from '../../src/models/unet.ts';
import { compileUNet } from '../../src/pipelines/stable-diffusion.ts';
import { FIXTURES, TINY_SD } from '../fixtures.ts';
import { COND_WIDTH, TIME_CHANNELS } from '../support/lcm-distilled.ts';

describe('guidanceScaleEmbedding', () => {
  it('is sin then cos of w·1000·exp(−ln(10000)·i/(half − 1)), zero-padded when odd, as float64 evaluates it', () => {
    for (const dim of [4, 7, 16, 256, 257]) {
      const half = Math.floor(dim / 2);
      for (const w of [0, 0.5, 1.5, 6.5, 14]) {
        const got = guidanceScaleEmbedding(w, dim, 2);
        expect(got).toHaveLength(2 * dim);
        for (let i = 0; i < half; i++) {
          const arg = w * 1000 * Math.exp((-i * Math.log(10000)) / (half - 1));
          // float32 arguments: the error grows with the argument (thousands at i = 0).
          const tolerance = 1e-6 + 4e-6 * Math.abs(arg);
          for (const row of [0, 1]) {
            expect(Math.abs(got[row * dim + i] - Math.sin(arg))).toBeLessThanOrEqual(tolerance);
            expect(Math.abs(got[row * dim + half + i] - Math.cos(arg))).toBeLessThanOrEqual(tolerance);
          }
        }
        if (dim % 2) expect([got[dim - 1], got[2 * dim - 1]]).toEqual([0, 0]);
      }
    }
  });

  it('refuses widths whose frequencies would divide by zero', () => {
    expect(() => guidanceScaleEmbedding(1, 3)).toThrow(/width 3 is too small/);
    expect(() => guidanceScaleEmbedding(Number.NaN, 8)).toThrow(/finite/);
  });
});

describe('an LCM-distilled UNet', () => {
  const plain = loadUNet(join(TINY_SD, 'unet'));
  const w = 6.5;
  const feeds = (() => {
    const g = new Generator(11);
    return {
      sample: { data: g.randn(2 * 4 * 64), shape: [2, 4, 8, 8] },
      timestep: { data: Float32Array.of(999, 259), shape: [2] },
      encoder_hidden_states: { data: g.randn(2 * 77 * 32), shape: [2, 77, 32] },
    };
  })();
  const condFeed = { timestep_cond: { data: guidanceScaleEmbedding(w, COND_WIDTH, 2), shape: [2, COND_WIDTH] } };

  /** The plain UNet's weights (the same file bytes), with `projection` as cond_proj and optionally another linear_1 bias. */
  function variant(projection: Float32Array | undefined, linear1Bias?: Float32Array): UNet2DConditionModel {
    const unet = new UNet2DConditionModel({ ...plain.config, time_cond_proj_dim: projection ? COND_WIDTH : null });
    const byName = new Map(plain.parameters().map((p) => [p.name, p]));
    for (const p of unet.parameters()) p.source = byName.get(p.name)?.source;
    if (projection) unet.time_embedding.cond_proj!.weight.setValue(projection);
    if (linear1Bias) unet.time_embedding.linear_1.bias!.setValue(linear1Bias);
    return unet;
  }

  async function predict(unet: UNet2DConditionModel): Promise<Float32Array> {
    const graph: CompiledGraph = await compileUNet(unet, [77, 32], {});
    expect(graph.graph.inputNames.includes('timestep_cond')).toBe(unet.config.time_cond_proj_dim !== null);
    const out = await graph.run(unet.config.time_cond_proj_dim === null ? feeds : { ...feeds, ...condFeed });
    await graph.release();
    return out.noise_pred.data as Float32Array;
  }

  const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  let plainOutput: Promise<Float32Array> | undefined;
  const plainPrediction = () => (plainOutput ??= predict(plain));

  it('with cond_proj all zero predicts exactly what the UNet without time_cond_proj_dim does', async () => {
    const zero = variant(new Float32Array(TIME_CHANNELS * COND_WIDTH));
    expect(zero.parameters().map((p) => p.name)).toContain('time_embedding.cond_proj.weight');
    expect(maxDiff(await predict(zero), await plainPrediction())).toBe(0);
  });

  it('with cond_proj P predicts what the plain UNet does with linear_1.bias + W₁·P·e', async () => {
    const projection = new Generator(5).randn(TIME_CHANNELS * COND_WIDTH).map((v) => 0.5 * v);
    const e = guidanceScaleEmbedding(w, COND_WIDTH);
    const w1 = plain.time_embedding.linear_1.weight.value(); // [128, 32]
    const b1 = plain.time_embedding.linear_1.bias!.value();
    const projected = Array.from({ length: TIME_CHANNELS }, (_, c) => e.reduce((s, v, k) => s + projection[c * COND_WIDTH + k] * v, 0));
    const shiftedBias = b1.map((b, o) => b + projected.reduce((s, v, c) => s + w1[o * TIME_CHANNELS + c] * v, 0));
    const lcm = await predict(variant(projection));
    const shifted = await predict(variant(undefined, shiftedBias));
    const unconditioned = await plainPrediction();
    expect(maxDiff(lcm, unconditioned)).toBeGreaterThan(1e-2); // the guidance embedding counts
    expect(maxDiff(lcm, shifted)).toBeLessThan(1e-4);
  });

  it('refuses timestep_cond when its config has no time_cond_proj_dim', () => {
    const t = Tensor.input('timestep', [2]);
    expect(() => plain.time_embedding.forward(plain.timeProjection(t), Tensor.input('timestep_cond', [2, COND_WIDTH]))).toThrow(/timestep_cond given to a UNet whose config has no time_cond_proj_dim/);
  });
});

describe('an LCM-distilled single file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-lcm-single-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const stored = readSafetensors(join(FIXTURES, 'tiny-sd-single.safetensors'));
  // The fixture's YAML names no head count, which a 32-wide text encoder needs (as test/models/single-file.test.ts adds).
  const yaml = join(dir, 'tiny-sd-single.yaml');
  writeFileSync(yaml, `${readFileSync(join(FIXTURES, 'tiny-sd-single.yaml'), 'utf8').trimEnd()}\n      params:\n        num_heads: 4\n`);
  const projection = new Generator(8).randn(TIME_CHANNELS * COND_WIDTH);

  for (const name of ['time_embedding.cond_proj.weight', 'time_embed.cond_proj.weight']) {
    it(`reads model.diffusion_model.${name}: its width into the config, LCMScheduler as its sampler`, () => {
      const path = join(dir, `${name.split('.')[0]}.safetensors`);
      const tensors = new Map(stored);
      tensors.set(`model.diffusion_model.${name}`, { dtype: 'F32', shape: [TIME_CHANNELS, COND_WIDTH], data: projection });
      writeSafetensors(path, tensors);
      const warnings: string[] = [];
      const loaded = loadSingleFile(path, { config: yaml, tokenizer: join(TINY_SD, 'tokenizer'), onWarning: (m) => warnings.push(m) });
      expect(loaded.unet.config.time_cond_proj_dim).toBe(COND_WIDTH);
      expect([...loaded.unet.time_embedding.cond_proj!.weight.value()]).toEqual([...projection]);
      expect(loaded.schedulerConfig._class_name).toBe('LCMScheduler');
      expect(warnings.join('\n')).toMatch(/LCM-distilled UNet \(guidance embedding width 8\)/);
      expect(warnings.join('\n')).not.toMatch(/unused/);
    });
  }

  it('a plain single file stays plain', () => {
    const loaded = loadSingleFile(join(FIXTURES, 'tiny-sd-single.safetensors'), { config: yaml, tokenizer: join(TINY_SD, 'tokenizer'), onWarning: () => {} });
    expect(loaded.unet.config.time_cond_proj_dim).toBeNull();
    expect(loaded.unet.time_embedding.cond_proj).toBeUndefined();
  });
});
