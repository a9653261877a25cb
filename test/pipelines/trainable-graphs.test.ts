// A pipeline being trained (LoRA, Textual Inversion, DreamBooth, `nuri train unet`) samples with the
// weights as they stand: after setTrainable its UNet graph takes those parameters as inputs, and a
// graph compiled before, which holds the old values as constants, is let go.

import { describe, expect, it } from 'vitest';
import { Generator } from '../../src/engine/index.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { TINY_SD } from '../fixtures.ts';

describe('StableDiffusion.setTrainable', () => {
  it("the UNet graph feeds a trained weight's current value; the graph compiled before is replaced", async () => {
    const sd = StableDiffusion.load(TINY_SD);
    const shape = [1, 4, 8, 8] as const;
    const latents = new Generator(1).randn(4 * 64);
    const context = new Generator(2).randn(77 * 32);
    const before = await sd.unet();
    expect(before.graph.trainable).toEqual([]);
    const baked = (await sd.predictNoise(before, latents, shape, 501, context)).noise_pred.data as Float32Array;

    const bias = sd.components.unet.conv_out.bias!;
    await sd.setTrainable([bias]);
    expect([...sd.trainable]).toEqual([bias]);
    const unet = await sd.unet();
    expect(unet).not.toBe(before);
    expect(unet.session).not.toBe(before.session);
    expect(unet.graph.trainable).toEqual([bias]);
    const fed = (await sd.predictNoise(unet, latents, shape, 501, context)).noise_pred.data as Float32Array;
    expect(Math.max(...fed.map((v, i) => Math.abs(v - baked[i])))).toBeLessThan(1e-5);

    // conv_out's bias is added last: a step that moves it by 0.25 moves every output by 0.25.
    bias.setValue(bias.value().map((v) => v + 0.25));
    const moved = (await sd.predictNoise(unet, latents, shape, 501, context)).noise_pred.data as Float32Array;
    expect(Math.max(...moved.map((v, i) => Math.abs(v - fed[i] - 0.25)))).toBeLessThan(1e-5);
    await sd.releaseUNet();
  });
});
