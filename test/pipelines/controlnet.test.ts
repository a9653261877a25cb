// txt2img with ControlNet against diffusers' StableDiffusionControlNetPipeline on tiny-sd +
// tiny-controlnet (reference-2 case n): DDIM 10 steps, 128×128, guidance 7.5, scale 1.0 and 0.5.

import { beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { type RgbImage, readImage } from '../../src/io/image.ts';
import type { ControlNetModel } from '../../src/models/controlnet.ts';
import { loadControlNet } from '../../src/models/controlnet-load.ts';
import { controlActive, readControlImage } from '../../src/pipelines/controlnet.ts';
import sharp from 'sharp';
import { generate } from '../../src/pipelines/generate.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { FIXTURES, TINY_SD, referenceCase } from '../fixtures.ts';
import { maxAbsDiff } from '../schedulers/reference.ts';

const TOLERANCE = 1e-4; // the cases': fp32, ~1e-4 abs on latents

let sd: StableDiffusion;
let net: ControlNetModel;
let image: RgbImage;
const initial = readSafetensors(referenceCase('pipeline_controlnet_ddim_scale1.0').file).get('initial_latents')!.data as Float32Array;
const base = { prompts: ['a house by a lake'], scheduler: 'ddim' as const, steps: 10, guidance: 7.5, width: 128, height: 128, latents: initial };

beforeAll(async () => {
  sd = StableDiffusion.load(TINY_SD);
  net = loadControlNet(join(FIXTURES, 'tiny-controlnet'));
  image = await readImage(join(FIXTURES, referenceCase('controlnet_forward').control_image_png as string), { width: 128, height: 128, fit: 'fill' });
});

describe('ControlNet txt2img matches diffusers (tiny-sd + tiny-controlnet)', () => {
  for (const scale of ['1.0', '0.5']) {
    it(`DDIM 10 steps, guidance 7.5, conditioning scale ${scale}`, async () => {
      const ref = readSafetensors(referenceCase(`pipeline_controlnet_ddim_scale${scale}`).file);
      const get = (n: string) => ref.get(n)!.data as Float32Array;
      const steps: Float32Array[] = [];
      const result = await generate(sd, { ...base, latents: get('initial_latents'), controlNets: [{ model: net, image, scale: Number(scale) }], onStep: (p) => steps.push(p.latents) });
      const perStep = get('latents_after_each_step');
      const size = result.latents.length;
      const errors = steps.map((s, i) => maxAbsDiff(s, perStep.subarray(i * size, (i + 1) * size)));
      console.log(`controlnet pipeline scale ${scale}: max |Δ| per-step latents ${Math.max(...errors).toExponential(2)}`);
      expect(steps.length).toBe(10);
      expect(Math.max(...errors)).toBeLessThan(TOLERANCE);
      expect(maxAbsDiff(result.latents, get('latents_out'))).toBeLessThan(TOLERANCE);
    });
  }
});

describe('readControlImage', () => {
  it("stretches to the output size, or covers and crops the centre (the extension's Crop and Resize)", async () => {
    // 128×64: the left quarter white, the rest black.
    const raw = Buffer.alloc(128 * 64 * 3);
    for (let y = 0; y < 64; y++) for (let x = 0; x < 32; x++) raw.fill(255, (y * 128 + x) * 3, (y * 128 + x) * 3 + 3);
    const png = await sharp(raw, { raw: { width: 128, height: 64, channels: 3 } }).png().toBuffer();
    const white = (img: RgbImage) => img.data.subarray(0, img.width * img.height).filter((v) => v > 0.5).length / (img.width * img.height);
    const stretched = await readControlImage(png, { width: 32, height: 32 });
    expect([stretched.width, stretched.height]).toEqual([32, 32]);
    expect(white(stretched)).toBeCloseTo(0.25, 1);
    expect(white(await readControlImage(png, { width: 32, height: 32, fit: 'cover' }))).toBe(0); // the centre 64×64 is all black
    const edges = await readControlImage(png, { width: 64, height: 32, preprocess: 'canny' });
    expect(white(edges)).toBeGreaterThan(0); // the quarter's right side
    expect(white(edges)).toBeLessThan(0.1);
  });
});

describe('several ControlNets and control start / end', () => {
  it('is on for step i of n unless i/n < start or (i + 1)/n > end, as diffusers keeps it', () => {
    const on = (start: number, end: number) => Array.from({ length: 10 }, (_, i) => Number(controlActive(i, 10, start, end))).join('');
    expect(on(0, 1)).toBe('1111111111');
    expect(on(0.2, 0.8)).toBe('0011111100');
    expect(on(0, 0.35)).toBe('1110000000');
    expect(on(0.5, 1)).toBe('0000011111');
  });

  it('two ControlNets at 0.5 sum to one at 1.0; a window with no step leaves the plain result (at 72×72: 9 latents, odd on the way down)', async () => {
    const short = { ...base, steps: 3, width: 72, height: 72, latents: undefined };
    const image = await readImage(join(FIXTURES, referenceCase('controlnet_forward').control_image_png as string), { width: 72, height: 72, fit: 'fill' });
    const one = await generate(sd, { ...short, controlNets: [{ model: net, image, scale: 1 }] });
    const two = await generate(sd, { ...short, controlNets: [{ model: net, image, scale: 0.5 }, { model: net, image, scale: 0.5 }] });
    expect(maxAbsDiff(one.latents, two.latents)).toBeLessThan(1e-5);
    const plain = await generate(sd, short);
    expect(maxAbsDiff(plain.latents, one.latents)).toBeGreaterThan(1e-3);
    // 3 steps with end 0.3: (0 + 1)/3 > 0.3, so no step runs the ControlNet.
    const never = await generate(sd, { ...short, controlNets: [{ model: net, image, end: 0.3 }] });
    expect(maxAbsDiff(plain.latents, never.latents)).toBe(0);
  });

  it('works with prompts longer than 77 tokens (graphs for the longer context)', async () => {
    const long = { ...base, steps: 2, width: 64, height: 64, latents: undefined, prompts: [Array(20).fill('a house by a lake').join(', ')] };
    const controlled = await generate(sd, { ...long, controlNets: [{ model: net, image: await readImage(join(FIXTURES, referenceCase('controlnet_forward').control_image_png as string), { width: 64, height: 64, fit: 'fill' }) }] });
    expect(controlled.shape).toEqual([1, 4, 8, 8]);
    expect(controlled.latents.every(Number.isFinite)).toBe(true);
  });

  it('names a control image of the wrong size and a bad window', async () => {
    await expect(generate(sd, { ...base, width: 64, height: 64, latents: undefined, controlNets: [{ model: net, image }] })).rejects.toThrow(/ControlNet 1: the control image is 128×128; resize it to the output size 64×64/);
    await expect(generate(sd, { ...base, controlNets: [{ model: net, image, start: 0.6, end: 0.4 }] })).rejects.toThrow(/ControlNet 1: control start and end must satisfy/);
  });
});
