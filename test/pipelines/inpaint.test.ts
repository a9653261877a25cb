// Inpainting against diffusers' StableDiffusionInpaintPipeline (reference-2, case j): tiny-sd with
// the 9-channel tiny-sd-inpaint UNet (DDIM and Euler, strength 1 and 0.75, from given latents and
// from the pipeline's own noise) and with its own 4-channel UNet (the unmasked area reset every
// step), at 128×128, 10 steps, guidance 7.5 — latents after every step, final latents, the mask
// at latent size, the masked-picture latents and the decoded picture. The posterior noise diffusers
// drew for the VAE samples is injected.

import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { type RgbImage, readImage } from '../../src/io/image.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { edit } from '../../src/pipelines/edit.ts';
import { generate } from '../../src/pipelines/generate.ts';
import { type InpaintFill, outpaintCanvas, prepareInpaint } from '../../src/pipelines/inpaint.ts';
import { type Mask, maskFromImage } from '../../src/pipelines/masks.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { createScheduler } from '../../src/schedulers/index.ts';
import type { SchedulerName } from '../../src/schedulers/index.ts';
import { Generator } from '../../src/engine/random.ts';
import { FIXTURES, TINY_SD, referenceCase } from '../fixtures.ts';

const TOLERANCE = 5e-4; // case j: fp32 after injecting the posterior noise (torch 1 vs 2 threads: 1.7e-4)
const PROMPT = 'a red bench in a park';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const CASES: { name: string; scheduler: SchedulerName; strength: number; unet: 9 | 4; mask: 'rect' | 'ellipse'; given: 'latents' | 'noise' }[] = [
  { name: 'pipeline_inpaint9_ddim_s1.0', scheduler: 'ddim', strength: 1, unet: 9, mask: 'rect', given: 'latents' },
  { name: 'pipeline_inpaint9_euler_s1.0', scheduler: 'euler', strength: 1, unet: 9, mask: 'ellipse', given: 'latents' },
  { name: 'pipeline_inpaint9_ddim_s0.75', scheduler: 'ddim', strength: 0.75, unet: 9, mask: 'rect', given: 'latents' },
  { name: 'pipeline_inpaint9_euler_s0.75', scheduler: 'euler', strength: 0.75, unet: 9, mask: 'ellipse', given: 'latents' },
  // latents=None: diffusers noised the picture in with noise it drew (recorded as `noise`).
  { name: 'pipeline_inpaint9_ddim_s0.75_seeded', scheduler: 'ddim', strength: 0.75, unet: 9, mask: 'rect', given: 'noise' },
  { name: 'pipeline_inpaint4_ddim_s1.0', scheduler: 'ddim', strength: 1, unet: 4, mask: 'rect', given: 'latents' },
];

describe('inpainting matches diffusers on tiny-sd (case j)', () => {
  let nine: StableDiffusion;
  let four: StableDiffusion;
  let picture: RgbImage;
  const masks: Record<string, Mask> = {};
  beforeAll(async () => {
    four = StableDiffusion.load(TINY_SD);
    nine = new StableDiffusion({ ...loadStableDiffusion(TINY_SD), unet: loadUNet(join(FIXTURES, 'tiny-sd-inpaint', 'unet')) });
    picture = await readImage(join(FIXTURES, 'reference-2', 'inpaint_image_128.png'));
    for (const m of ['rect', 'ellipse']) masks[m] = maskFromImage(await readImage(join(FIXTURES, 'reference-2', `inpaint_mask_${m}_128.png`)));
  });

  it('reads the PNGs as diffusers did (exact pixels), and the mask binarised', () => {
    const ref = readSafetensors(referenceCase('pipeline_inpaint9_ddim_s1.0').file);
    const pixels = ref.get('image_u8')!.data as Uint8Array; // HWC
    const plane = 128 * 128;
    let worst = 0;
    for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(Math.round(picture.data[c * plane + i] * 255) - pixels[i * 3 + c]));
    expect(worst).toBe(0);
    const maskU8 = ref.get('mask_u8')!.data as Uint8Array;
    expect(maxAbsDiff(masks.rect.data.map((v) => Math.round(v * 255)), maskU8)).toBe(0);
    const binary = ref.get('mask_condition_bool')!.data as Uint8Array;
    expect(maxAbsDiff(masks.rect.data.map((v) => (v >= 0.5 ? 1 : 0)), binary)).toBe(0);
  });

  it('below strength 1 the masked area starts from the picture, its surroundings, noise or nothing (inpainting_fill); the rest alike', async () => {
    const noise = new Generator(4).randn(1024);
    const start = async (fill: InpaintFill) => {
      const scheduler = createScheduler('ddim', four.components.schedulerConfig);
      scheduler.setTimesteps(10);
      const run = await prepareInpaint(four, { image: picture, inpaint: { mask: masks.rect, fill }, shape: [1, 4, 16, 16], scheduler, strength: 0.5, noise, startFromNoise: false, rng: new Generator(9) });
      return { latents: run.latents, mask: run.latentMask };
    };
    const original = await start('original');
    for (const fill of ['latent-noise', 'latent-nothing', 'fill'] as const) {
      const other = await start(fill);
      let inside = 0;
      let outside = 0;
      other.latents.forEach((v, i) => {
        const d = Math.abs(v - original.latents[i]);
        if (original.mask[i % 256]) inside = Math.max(inside, d);
        else outside = Math.max(outside, d);
      });
      // 'fill' changes pixels, which the VAE encoder spreads a little past the mask's edge.
      if (fill !== 'fill') expect(outside, fill).toBe(0);
      expect(inside, fill).toBeGreaterThan(0.01);
    }
  });

  it('outpainting grows the canvas; the picture stays where the blurred border does not reach', async () => {
    const { image, mask } = outpaintCanvas(picture, { left: 32, bottom: 16 });
    const r = await generate(four, { prompts: [PROMPT], steps: 2, seed: 1, width: 160, height: 144, initImage: image, inpaint: { mask, blur: 4 } });
    const out = r.images[0];
    expect([out.width, out.height]).toEqual([160, 144]);
    const at = (img: RgbImage, c: number, x: number, y: number) => img.data[c * img.width * img.height + y * img.width + x];
    let kept = 0;
    let border = 0;
    // σ 4: 10 px (2.5σ) past the seam the blurred mask is 0.
    for (let y = 0; y < 128 - 10; y++) for (let x = 10; x < 128; x++) for (let c = 0; c < 3; c++) kept = Math.max(kept, Math.abs(at(out, c, x + 32, y) - at(picture, c, x, y)));
    for (let y = 0; y < 144; y++) for (let x = 0; x < 16; x++) for (let c = 0; c < 3; c++) border = Math.max(border, Math.abs(at(out, c, x, y) - at(image, c, x, y)));
    expect(kept).toBe(0);
    expect(border).toBeGreaterThan(0.05); // repainted, not the repeated edge it started from
  });

  it('an inpainting UNet without a picture and mask is refused, naming the model', async () => {
    await expect(generate(nine, { prompts: ['a cat'], steps: 1, width: 64, height: 64 })).rejects.toThrow(/generate: tiny-sd has an inpainting UNet \(9 input channels\); it needs a picture and a mask/);
    await expect(edit(nine, { source: 'a cat', target: 'a dog', steps: 1, width: 64, height: 64 })).rejects.toThrow(/edit: tiny-sd has an inpainting UNet/);
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const sd = c.unet === 9 ? nine : four;
      const ref = readSafetensors(referenceCase(c.name).file);
      const get = (n: string) => ref.get(n)!.data as Float32Array;
      const inpaint = {
        mask: masks[c.mask],
        maskedImageNoise: get('masked_image_posterior_noise'),
        imageNoise: ref.has('image_posterior_noise') ? get('image_posterior_noise') : undefined,
      };
      const latents = c.given === 'latents' ? get('initial_latents') : get('noise');

      // The inputs the UNet sees: mask at latent size, masked-picture latents.
      const scheduler = createScheduler(c.scheduler, sd.components.schedulerConfig);
      scheduler.setTimesteps(10);
      const run = await prepareInpaint(sd, { image: picture, inpaint, shape: [1, 4, 16, 16], scheduler, strength: c.strength, noise: latents, startFromNoise: c.given === 'latents', rng: { randn: () => { throw new Error('no draw expected'); }, rand: () => new Float32Array(), randint: () => 0 } });
      expect(maxAbsDiff(run.latentMask, get('mask_latent'))).toBe(0);
      expect(maxAbsDiff(run.timesteps, Array.from(ref.get('timesteps_run')!.data as ArrayLike<number | bigint>, Number))).toBeLessThan(1e-3);
      if (run.conditioning) expect(maxAbsDiff(run.conditioning.subarray(256), get('masked_image_latents'))).toBeLessThan(TOLERANCE);

      const steps: Float32Array[] = [];
      const result = await generate(sd, {
        prompts: [PROMPT],
        scheduler: c.scheduler,
        guidance: 7.5,
        steps: 10,
        width: 128,
        height: 128,
        initImage: picture,
        strength: c.strength,
        inpaint,
        latents,
        latentsAsStart: c.given === 'latents',
        onStep: (p) => steps.push(p.latents),
      });
      const perStep = get('latents_after_each_step');
      expect(steps.length).toBe(ref.get('timesteps_run')!.shape[0]);
      const stepError = Math.max(...steps.map((s, i) => maxAbsDiff(s, perStep.subarray(i * 1024, (i + 1) * 1024))));
      const finalError = maxAbsDiff(result.latents, get('latents_out'));
      console.log(`${c.name}: max |Δ| per-step latents ${stepError.toExponential(2)}, final ${finalError.toExponential(2)}`);
      expect(stepError).toBeLessThan(TOLERANCE);
      expect(finalError).toBeLessThan(TOLERANCE);

      if (ref.has('decoded_raw')) {
        // Repainted pixels are the decoder's; kept pixels are the picture's own (the overlay).
        const raw = get('decoded_raw');
        const image = result.images[0];
        let repainted = 0;
        let kept = 0;
        for (let i = 0; i < raw.length; i++) {
          const inside = masks[c.mask].data[i % (128 * 128)] >= 0.5;
          if (inside) repainted = Math.max(repainted, Math.abs(image.data[i] - Math.min(1, Math.max(0, raw[i] / 2 + 0.5))));
          else kept = Math.max(kept, Math.abs(image.data[i] - picture.data[i]));
        }
        expect(repainted).toBeLessThan(TOLERANCE);
        expect(kept).toBe(0);
      }
    });
  }
});
