// --dtype q8 on the tiny fixture pipeline: the same seed gives a picture close to the fp32 one
// (the quality goal, ≥ 30 dB PSNR, here on 64×64 pictures after 2 DDIM steps), and the VAE
// stays fp32 (its graph is the same session either way).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from '../../src/pipelines/generate.ts';
import { loadPipeline } from '../../src/pipelines/load-pipeline.ts';
import { TINY_SD } from '../fixtures.ts';

let cacheDir: string;
beforeAll(() => {
  cacheDir = mkdtempSync(join(tmpdir(), 'nuri-q8-pipeline-'));
});
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

function psnr(a: Float32Array, b: Float32Array): number {
  let mse = 0;
  for (let i = 0; i < a.length; i++) mse += (a[i] - b[i]) ** 2;
  return 10 * Math.log10(1 / (mse / a.length));
}

describe('q8 weights on tiny-sd', () => {
  it('gives a picture within 30 dB PSNR of fp32 from the same seed, and a different one', async () => {
    const pictures: Float32Array[] = [];
    const decoders: unknown[] = [];
    for (const dtype of ['fp32', 'q8'] as const) {
      const sd = await loadPipeline(TINY_SD, { dtype, run: { cacheDir } });
      const result = await generate(sd, { prompts: ['a photo of a cat'], steps: 2, width: 64, height: 64, seed: 3, guidance: 7.5, scheduler: 'ddim' });
      pictures.push(result.images[0].data);
      decoders.push((await sd.vaeRunner.compiledDecoder()).session);
    }
    const db = psnr(pictures[1], pictures[0]);
    expect(db).toBeGreaterThan(30);
    expect(db).toBeLessThan(Infinity); // the weights really were quantised
    expect(decoders[1]).toBe(decoders[0]);
  });

  it('refuses an unknown dtype naming the choices', async () => {
    await expect(loadPipeline(TINY_SD, { dtype: 'q4' as never })).rejects.toThrow(/dtype must be one of fp32, q8, got q4/);
  });
});
