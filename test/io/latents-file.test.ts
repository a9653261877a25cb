// `--latents` files: NaN or Inf, a wrong rank, channels or a side the UNet cannot halve are
// refused naming the file, before any model work.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../src/engine/safetensors.ts';
import { checkLatentsFit, readLatentsFile } from '../../src/io/latents-file.ts';

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

  it("refuses latents that do not fit the model's channels, and takes any size", () => {
    const odd = latentsFile([1, 4, 9, 9]);
    expect(() => checkLatentsFit(odd, readLatentsFile(odd), { channels: 4 })).not.toThrow();
    const three = latentsFile([1, 3, 8, 8]);
    expect(() => checkLatentsFit(three, readLatentsFile(three), { channels: 4 })).toThrow(`--latents ${three}: tensor "latents" [1, 3, 8, 8] has 3 channels; this model's latents have 4`);
  });
});
