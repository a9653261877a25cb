// Full txt2img pipelines against diffusers' StableDiffusionPipeline on the tiny fixture model:
// latents after every step, final latents and the decoded image, at 128×128 with 10 steps.

import { beforeAll, describe, expect, it } from 'vitest';
import { Generator } from '../../src/engine/random.ts';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { BatchGenerator, generate } from '../../src/pipelines/generate.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import type { SchedulerName } from '../../src/schedulers/index.ts';
import { TINY_SD, referenceCase } from '../fixtures.ts';

const TOLERANCE = 1e-3; // the bound for full-pipeline latents (fp32, 10 compounding steps)

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const CASES: { name: string; scheduler: SchedulerName; guidance: number; prompts: string[]; negative?: string }[] = [
  { name: 'pipeline_ddim_cfg7.5', scheduler: 'ddim', guidance: 7.5, prompts: ['a photo of a cat'] },
  { name: 'pipeline_ddim_cfg1.0', scheduler: 'ddim', guidance: 1.0, prompts: ['a photo of a cat'] },
  { name: 'pipeline_euler_cfg7.5', scheduler: 'euler', guidance: 7.5, prompts: ['a photo of a cat'] },
  { name: 'pipeline_euler_cfg1.0', scheduler: 'euler', guidance: 1.0, prompts: ['a photo of a cat'] },
  { name: 'pipeline_ddim_cfg7.5_negative', scheduler: 'ddim', guidance: 7.5, prompts: ['a photo of a cat'], negative: 'blurry, low quality' },
  { name: 'pipeline_ddim_cfg7.5_batch2', scheduler: 'ddim', guidance: 7.5, prompts: ['a photo of a cat', 'a dog riding a bike'] },
];

describe('txt2img matches diffusers on tiny-sd', () => {
  let sd: StableDiffusion;
  beforeAll(() => {
    sd = StableDiffusion.load(TINY_SD);
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const ref = readSafetensors(referenceCase(c.name).file);
      const get = (n: string) => ref.get(n)!.data as Float32Array;
      const steps: Float32Array[] = [];
      const result = await generate(sd, {
        prompts: c.prompts,
        negativePrompt: c.negative,
        scheduler: c.scheduler,
        guidance: c.guidance,
        steps: 10,
        width: 128,
        height: 128,
        latents: get('initial_latents'),
        onStep: (p) => steps.push(p.latents),
      });
      const perStep = get('latents_after_each_step');
      const size = result.latents.length;
      const stepErrors = steps.map((s, i) => maxAbsDiff(s, perStep.subarray(i * size, (i + 1) * size)));
      expect(Math.max(...stepErrors)).toBeLessThan(TOLERANCE);
      expect(maxAbsDiff(result.latents, get('latents_out'))).toBeLessThan(TOLERANCE);
      // image_np is NHWC in [0, 1]; ours is CHW per image.
      const imageNp = get('image_np');
      const [, h, w] = ref.get('image_np')!.shape;
      let imageError = 0;
      result.images.forEach((img, b) => {
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let ch = 0; ch < 3; ch++) {
          imageError = Math.max(imageError, Math.abs(img.data[ch * h * w + y * w + x] - imageNp[((b * h + y) * w + x) * 3 + ch]));
        }
      });
      expect(imageError).toBeLessThan(TOLERANCE);
      console.log(`${c.name}: max |Δ| per-step latents ${Math.max(...stepErrors).toExponential(2)}, image ${imageError.toExponential(2)}`);
    });
  }

  it('the same seed gives the same latents; image i of a batch equals a single run with seed + i', async () => {
    const options = { prompts: ['a photo of a cat', 'a dog riding a bike'], steps: 3, width: 64, height: 64, seed: 7, scheduler: 'euler-a' as const };
    const a = await generate(sd, options);
    const b = await generate(sd, options);
    expect(maxAbsDiff(a.latents, b.latents)).toBe(0);
    const second = await generate(sd, { ...options, prompts: ['a dog riding a bike'], seed: 8 });
    expect(maxAbsDiff(a.latents.subarray(a.latents.length / 2), second.latents)).toBeLessThan(1e-5);
  });

  it('says when a negative prompt had no effect: at guidance ≤ 1 there is no unconditional pass to read it', async () => {
    const options = { prompts: ['a photo of a cat'], negativePrompt: 'blurry', steps: 2, width: 64, height: 64, seed: 1 };
    expect((await generate(sd, { ...options, guidance: 1 })).warnings).toEqual(['the negative prompt was not used: guidance 1 ≤ 1 runs no unconditional pass']);
    expect((await generate(sd, { ...options, guidance: 7.5 })).warnings).toEqual([]);
    expect((await generate(sd, { ...options, negativePrompt: '', guidance: 1 })).warnings).toEqual([]);
  });

  it('img2img runs the last ⌊steps·strength⌋ steps from the noised picture, which shapes the result', async () => {
    const picture = (value: number) => ({ width: 64, height: 64, channels: 3 as const, data: new Float32Array(3 * 64 * 64).fill(value) });
    const run = async (value: number, strength: number) => {
      let steps = 0;
      const r = await generate(sd, { prompts: ['a cat'], steps: 10, width: 64, height: 64, seed: 1, initImage: picture(value), strength, onStep: () => steps++ });
      return { steps, latents: r.latents };
    };
    const dark = await run(0.1, 0.3);
    const light = await run(0.9, 0.3);
    expect(dark.steps).toBe(3);
    expect(maxAbsDiff(dark.latents, light.latents)).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(dark.latents, (await run(0.1, 0.3)).latents)).toBe(0);
    expect((await run(0.1, 1)).steps).toBe(10);
  });

  it('BatchGenerator splits draws per item', () => {
    const g = new BatchGenerator([1, 2]);
    const both = g.randn(6);
    expect(Array.from(both.subarray(3))).toEqual(Array.from(new Generator(2).randn(3)));
  });
});
