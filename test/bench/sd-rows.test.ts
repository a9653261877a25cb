// The bench's own logic on the tiny fixtures: the sharded random UNet it writes for SDXL, the SDXL
// step child's feeds, how a picture's time is split, and the peak check of the rate table.

import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Generator } from '../../src/engine/index.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { parseUNetConfig } from '../../src/models/checkpoint/unet-config.ts';
import { UNet2DConditionModel } from '../../src/models/unet.ts';
import { readF32 } from '../../bench/compare.ts';
import { ensureRandomSdxlUNet } from '../../bench/random-checkpoint.ts';
import { type Span, pictureTimes, sessionKind } from '../../bench/sd-picture.ts';
import { rateTable } from '../../bench/sd-report.ts';
import { measureUNetStep } from '../../bench/sdxl-measure.ts';
import { TINY_SDXL } from '../fixtures.ts';

const root = mkdtempSync(join(tmpdir(), 'nuri-bench-rows-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('the random SDXL UNet, written in shards', () => {
  const config = JSON.parse(readFileSync(join(TINY_SDXL, 'unet', 'config.json'), 'utf8')) as Record<string, unknown>;
  const dir = ensureRandomSdxlUNet({ root, config, log: () => {} });

  it('loads as a diffusers folder whose weights are those of one init of the whole model', () => {
    const index = JSON.parse(readFileSync(join(dir, 'diffusion_pytorch_model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    const shards = readdirSync(dir).filter((n) => /^diffusion_pytorch_model-\d{5}-of-\d{5}\.safetensors$/.test(n));
    expect(new Set(Object.values(index.weight_map)).size).toBe(shards.length);
    expect(shards.length).toBeGreaterThan(5); // conv_in, the embeddings, each block, …

    const loaded = loadUNet(dir);
    const whole = new UNet2DConditionModel(parseUNetConfig(config));
    whole.init(new Generator(4));
    const expected = new Map(whole.parameters().map((p) => [p.name, p.value()]));
    const params = loaded.parameters();
    expect(params.length).toBe(expected.size);
    const differing = params.filter((p) => {
      const [a, b] = [p.value(), expected.get(p.name)!];
      return a.length !== b.length || a.some((v, i) => v !== b[i]);
    });
    expect(differing.map((p) => p.name)).toEqual([]);
  });

  it('runs a guided SDXL step in the SDXL child and saves its noise prediction', async () => {
    const prefix = join(root, 'tiny-sdxl-64');
    const r = await measureUNetStep(dir, { size: 64, steps: 1, dtype: 'fp32', cacheDir: join(root, 'graphs'), saveOutputs: prefix });
    expect(r.unetStepsS).toHaveLength(1);
    expect(r.unetStepS).toBeGreaterThan(0);
    expect(r.peakRssBytes).toBeGreaterThan(0);
    const noise = readF32(`${prefix}.unet.f32`);
    expect(noise.length).toBe(2 * 4 * 8 * 8);
    expect(noise.every(Number.isFinite)).toBe(true);
  });

  it('refuses a UNet without added conditions', async () => {
    const sd15 = ensureRandomSdxlUNet({ root: join(root, 'sd'), config: { ...config, addition_embed_type: null, projection_class_embeddings_input_dim: null }, log: () => {} });
    await expect(measureUNetStep(sd15, { size: 64, steps: 1, dtype: 'fp32', cacheDir: join(root, 'graphs') })).rejects.toThrow(/not an SDXL UNet/);
  });
});

describe('a picture’s time', () => {
  it('is split into model runs, session creation, loading and the PNG', () => {
    const span = (kind: Span['kind'], start: number, end: number): Span => ({ kind, start, end });
    const creates = [span('text encoder', 1000, 1500), span('UNet', 2000, 4000), span('VAE decoder', 9000, 9500)];
    const runs = [span('text encoder', 1500, 1700), span('UNet', 4000, 5000), span('UNet', 5000, 7000), span('UNet', 7000, 8000), span('VAE decoder', 9500, 10500)];
    const t = pictureTimes(creates, runs, 11000);
    expect(t.totalS).toBe(11);
    expect(t.runS).toEqual({ 'text encoder': 0.2, UNet: 4, 'VAE decoder': 1 });
    expect(t.unetStepsS).toEqual([1, 2, 1]);
    expect(t.unetStepS).toBe(1);
    expect(t.sessionS).toEqual({ 'text encoder': 0.5, UNet: 2, 'VAE decoder': 0.5 });
    expect(t.afterLastRunS).toBeCloseTo(0.5);
    expect(t.loadS).toBeCloseTo(11 - 5.2 - 0.5);
  });

  it('knows each model by its inputs', () => {
    expect(sessionKind(['sample', 'timestep', 'encoder_hidden_states'])).toBe('UNet');
    expect(sessionKind(['input_ids'])).toBe('text encoder');
    expect(sessionKind(['latents'])).toBe('VAE decoder');
    expect(sessionKind(['images'])).toBe('VAE encoder');
  });
});

describe('the rate table', () => {
  const bound = { wall: 100, perCpuSecond: 60, threads: 2 };
  it('reports an fp32 figure above the measured peak as an error, not int8 ones', () => {
    const errors: string[] = [];
    const text = rateTable([
      { dtype: 'fp32', stage: 'UNet step', size: 512, flops: 100e9, wallS: 2, cpuS: 2 }, // 50 GFLOP/s: under both
      { dtype: 'fp32', stage: 'VAE decode', size: 512, flops: 100e9, wallS: 2, cpuS: 1 }, // 100 per CPU-second: above
      { dtype: 'q8', stage: 'UNet step', size: 512, flops: 300e9, wallS: 2, cpuS: 2 }, // int8: not bounded by fp32
    ], bound, errors);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/VAE decode at 512² \(fp32\): 100\.0 GFLOP per CPU-second is above the measured peak 60\.0/);
    expect(text).toMatch(/UNet step\s+512²\s+fp32\s+100\.0\s+2\.00 s\s+2\.00 s\s+50\.0\s+50%\s+50\.0\s+83%/);
    // the int8 row gives its rate but no fraction of the fp32 peak (150 GFLOP/s would read as 150%)
    expect(text).toMatch(/UNet step\s+512²\s+q8\s+300\.0\s+2\.00 s\s+2\.00 s\s+150\.0\s+int8\s+150\.0\s+int8/);
    expect(text).not.toMatch(/150%|250%/);
  });
});
