// Every side that is a multiple of 8 works, as in diffusers: latents the UNet's stride-2 convs do
// not halve evenly (9 → 5 → 3 → 2 on tiny-sd) are rounded up on the way down and each upsampler is
// resized to the skip it meets on the way up. Parity at 72×72 against diffusers' recording, then
// every multiple of 8 from 8 to 136 in both directions, and Prompt-to-Prompt's local blend and the
// attention maps at odd latent grids.

import { beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { crossAttentionMaps } from '../../src/pipelines/attention-maps.ts';
import { edit } from '../../src/pipelines/edit.ts';
import { generate } from '../../src/pipelines/generate.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { TINY_SD, referenceCase } from '../fixtures.ts';

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const SIDES = Array.from({ length: 17 }, (_, i) => 8 * (i + 1)); // 8, 16, …, 136

describe('sizes the UNet does not halve evenly (tiny-sd)', () => {
  let sd: StableDiffusion;
  beforeAll(() => {
    sd = StableDiffusion.load(TINY_SD);
  });

  it('72×72 matches diffusers (pipeline_ddim_72x72: 9 latents, 9 → 5 → 3 → 2 and back)', async () => {
    const ref = readSafetensors(referenceCase('pipeline_ddim_72x72').file);
    const get = (n: string) => ref.get(n)!.data as Float32Array;
    const steps: Float32Array[] = [];
    const result = await generate(sd, {
      prompts: ['a photo of a cat'],
      scheduler: 'ddim',
      guidance: 7.5,
      steps: 10,
      width: 72,
      height: 72,
      latents: get('initial_latents'),
      onStep: (p) => steps.push(p.latents),
    });
    expect(result.shape).toEqual([1, 4, 9, 9]);
    const perStep = get('latents_after_each_step');
    const size = result.latents.length;
    const stepError = Math.max(...steps.map((s, i) => maxAbsDiff(s, perStep.subarray(i * size, (i + 1) * size))));
    expect(stepError).toBeLessThan(1e-4); // the case's tolerance (torch 1 vs 2 threads: 3.1e-5)
    expect(maxAbsDiff(result.latents, get('latents_out'))).toBeLessThan(1e-4);
  });

  it('every multiple of 8 from 8 to 136, as width and as height', async () => {
    // Each side once as the width (height 9 latents, rounded up at every level), and once as the
    // height against a width that walks the other sides (1 to 17 latents, all residues mod 8).
    const pairs = [...SIDES.map((w) => [w, 72]), ...SIDES.map((h, i) => [SIDES[(i * 5 + 3) % SIDES.length], h])];
    for (const [width, height] of pairs) {
      const r = await generate(sd, { prompts: ['a cat'], steps: 1, guidance: 1, width, height, seed: 1 });
      expect(r.shape, `${width}×${height}`).toEqual([1, 4, height / 8, width / 8]);
      expect([r.images[0].width, r.images[0].height]).toEqual([width, height]);
      expect(r.latents.every(Number.isFinite), `${width}×${height}`).toBe(true);
    }
    const covered = (axis: 0 | 1) => new Set(pairs.map((p) => p[axis]));
    expect([...covered(0)].sort((a, b) => a - b)).toEqual(SIDES);
    expect([...covered(1)].sort((a, b) => a - b)).toEqual(SIDES);
  });

  it('local blend at 96×96 (12 → 6 → 3 → 2) and attention maps at 72×40 (9×5 latents)', async () => {
    const r = await edit(sd, { source: 'a cat on a mat', target: 'a dog on a mat', localBlend: { words: ['cat', 'dog'] }, steps: 2, width: 96, height: 96, seed: 3 });
    expect(r.shape).toEqual([2, 4, 12, 12]);
    expect(r.latents.every(Number.isFinite)).toBe(true);
    const maps = await crossAttentionMaps(sd, { prompt: 'a red cat', steps: 1, width: 72, height: 40, seed: 2 });
    // tiny-sd's maps come at its finest cross-attention grid: the latents themselves, 5 rows of 9.
    expect([maps.mapHeight, maps.mapWidth]).toEqual([5, 9]);
    for (const { map } of maps.tokens) expect(map.length === 45 && map.every((v) => Number.isFinite(v) && v >= 0)).toBe(true);
  });
});
