// `--latents` files: NaN or Inf, a wrong rank or channels are refused naming the file, before
// any model work; inpainting's posterior noise tensors are read beside the latents.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../src/engine/safetensors.ts';
import { checkLatentsFit, checkStepNoiseSteps, readLatentsFile } from '../../src/io/latents-file.ts';

function latentsFile(shape: number[], fill: (d: Float32Array) => void = () => {}): string {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5);
  fill(data);
  const path = join(mkdtempSync(join(tmpdir(), 'nuri-latents-')), 'z.safetensors');
  writeSafetensors(path, { latents: { dtype: 'F32', shape, data } });
  return path;
}

describe('--latents files', () => {
  it('reads a sound file', () => {
    expect(readLatentsFile(latentsFile([1, 4, 8, 8])).shape).toEqual([1, 4, 8, 8]);
  });

  for (const value of [NaN, Infinity, -Infinity]) {
    it(`refuses ${value}, naming the file`, () => {
      const path = latentsFile([1, 4, 8, 8], (d) => (d[17] = value));
      expect(() => readLatentsFile(path)).toThrow(`--latents ${path}: tensor "latents" holds ${value} at index 17`);
    });
  }

  it('refuses a wrong rank or an empty side, naming the file', () => {
    const flat = latentsFile([4, 8, 8]);
    expect(() => readLatentsFile(flat)).toThrow(`--latents ${flat}: tensor "latents" must be fp32 [B, C, H/f, W/f]`);
    const empty = latentsFile([1, 4, 0, 8]);
    expect(() => readLatentsFile(empty)).toThrow(/no empty side, found F32 \[1, 4, 0, 8\]/);
  });

  it('reads the posterior noise of inpainting, checking its shape and values', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-latents-'));
    const write = (name: string, tensors: Record<string, { shape: number[]; value: number }>) => {
      const path = join(dir, name);
      writeSafetensors(path, Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { dtype: 'F32' as const, shape: t.shape, data: new Float32Array(t.shape.reduce((a, b) => a * b, 1)).fill(t.value) }])));
      return path;
    };
    const both = readLatentsFile(write('both.safetensors', { latents: { shape: [1, 4, 2, 3], value: 1 }, masked_image_noise: { shape: [1, 4, 2, 3], value: 2 }, image_noise: { shape: [1, 4, 2, 3], value: 3 } }));
    expect([both.maskedImageNoise?.[0], both.imageNoise?.[5]]).toEqual([2, 3]);
    expect(readLatentsFile(write('plain.safetensors', { latents: { shape: [1, 4, 2, 3], value: 1 } })).maskedImageNoise).toBeUndefined();
    const wrong = write('wrong.safetensors', { latents: { shape: [1, 4, 2, 3], value: 1 }, masked_image_noise: { shape: [1, 4, 3, 2], value: 2 } });
    expect(() => readLatentsFile(wrong)).toThrow(`--latents ${wrong}: tensor "masked_image_noise" must be fp32 of the latents' shape [1, 4, 2, 3], found F32 [1, 4, 3, 2]`);
    const nan = write('nan.safetensors', { latents: { shape: [1, 4, 2, 3], value: 1 }, image_noise: { shape: [1, 4, 2, 3], value: NaN } });
    expect(() => readLatentsFile(nan)).toThrow(`--latents ${nan}: tensor "image_noise" holds NaN at index 0`);
  });

  it("refuses latents that do not fit the model's channels, and takes any size", () => {
    const odd = latentsFile([1, 4, 9, 9]);
    expect(() => checkLatentsFit(odd, readLatentsFile(odd), { channels: 4 })).not.toThrow();
    const three = latentsFile([1, 3, 8, 8]);
    expect(() => checkLatentsFit(three, readLatentsFile(three), { channels: 4 })).toThrow(`--latents ${three}: tensor "latents" [1, 3, 8, 8] has 3 channels; this model's latents have 4`);
  });

  it('reads step_noise [S, B, C, h, w] as one row per step, and checks it against the run', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'nuri-latents-')), 'z.safetensors');
    const noise = Float32Array.from({ length: 3 * 2 * 4 * 8 * 8 }, (_, i) => i);
    writeSafetensors(path, { latents: { dtype: 'F32', shape: [2, 4, 8, 8], data: new Float32Array(2 * 256) }, step_noise: { dtype: 'F32', shape: [3, 2, 4, 8, 8], data: noise } });
    const file = readLatentsFile(path);
    expect(file.stepNoise).toHaveLength(3);
    expect(file.stepNoise![2]![0]).toBe(2 * 512);
    expect(() => checkStepNoiseSteps(path, file, 3, 'euler-a')).not.toThrow();
    expect(() => checkStepNoiseSteps(path, file, 4, 'euler-a')).toThrow(`--latents ${path}: tensor "step_noise" holds the noise of 3 sampler steps; this run (euler-a) takes 4`);
    expect(readLatentsFile(latentsFile([1, 4, 8, 8])).stepNoise).toBeUndefined();
  });

  it('refuses a non-finite step_noise, naming the file and the tensor', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'nuri-latents-')), 'z.safetensors');
    const noise = new Float32Array(2 * 256).fill(0.1);
    noise[300] = NaN;
    writeSafetensors(path, { latents: { dtype: 'F32', shape: [1, 4, 8, 8], data: new Float32Array(256) }, step_noise: { dtype: 'F32', shape: [2, 1, 4, 8, 8], data: noise } });
    expect(() => readLatentsFile(path)).toThrow(`--latents ${path}: tensor "step_noise" holds NaN at index 300; step noise must be finite`);
  });
});
