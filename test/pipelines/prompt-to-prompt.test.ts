// Prompt-to-Prompt against diffusers' community Prompt2PromptPipeline on the tiny fixture model
// (DDIM, 10 steps, 128×128, guidance 7.5, the recorded initial latents): both rows' final latents.

import { beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { type EditOptions, edit } from '../../src/pipelines/edit.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { TINY_SD, referenceCase } from '../fixtures.ts';

const TOLERANCE = 1e-4; // the cases' stated bound: "fp32; ~1e-4 abs"

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const CASES: { name: string; options: Omit<EditOptions, 'source'> & { source: string } }[] = [
  {
    name: 'p2p_replace',
    options: { source: 'a cat riding a bike', target: 'a dog riding a bike', crossReplace: { default: 1.0, words: { dog: 0.4 } }, selfReplace: 0.4 },
  },
  {
    name: 'p2p_reweight',
    options: { source: 'a smiling cat riding a bike', crossReplace: 1.0, selfReplace: 0.4, reweight: { smiling: 5 } },
  },
  {
    name: 'p2p_refine',
    options: { source: 'a cat riding a bike', target: 'a fluffy cat riding a red bike', refine: true, crossReplace: 1.0, selfReplace: 0.4 },
  },
];

describe('Prompt-to-Prompt matches the community pipeline on tiny-sd', () => {
  let sd: StableDiffusion;
  beforeAll(() => {
    sd = StableDiffusion.load(TINY_SD);
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const ref = readSafetensors(referenceCase(c.name).file);
      const get = (n: string) => ref.get(n)!.data as Float32Array;
      const result = await edit(sd, { ...c.options, scheduler: 'ddim', steps: 10, guidance: 7.5, width: 128, height: 128, latents: get('initial_latents') });
      const expected = get('latents_out');
      const half = expected.length / 2;
      const source = maxAbsDiff(result.latents.subarray(0, half), expected.subarray(0, half));
      const edited = maxAbsDiff(result.latents.subarray(half), expected.subarray(half));
      console.log(`${c.name}: max |Δ| source row ${source.toExponential(2)}, edited row ${edited.toExponential(2)} (tolerance ${TOLERANCE})`);
      expect(source).toBeLessThan(TOLERANCE);
      expect(edited).toBeLessThan(TOLERANCE);
    });
  }
});
