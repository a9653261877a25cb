// The last line of defence: whatever made them (NaN weights, NaN latents, an overflowing config),
// non-finite final latents or a non-finite decoded picture are an error, never a black PNG.

import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generate } from '../../src/pipelines/generate.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { loadVae } from '../../src/models/checkpoint/components.ts';
import { VaeRunner } from '../../src/models/vae-runner.ts';
import { TINY_SD } from '../fixtures.ts';

describe('non-finite pictures', () => {
  it('refuses NaN final latents before decoding', async () => {
    const runner = new VaeRunner(loadVae(join(TINY_SD, 'vae')));
    const latents = new Float32Array(4 * 8 * 8).fill(0.1);
    latents[3] = NaN;
    await expect(runner.decodeLatents(latents, [1, 4, 8, 8])).rejects.toThrow(/the final latents hold NaN \(at index 3\).*no picture is written/);
  });

  it("refuses a non-finite decoder output (a NaN weight in the VAE)", async () => {
    const vae = loadVae(join(TINY_SD, 'vae'));
    const bias = vae.parameters().find((p) => p.name === 'decoder.conv_out.bias')!;
    bias.setValue(Float32Array.of(0, NaN, 0));
    const runner = new VaeRunner(vae);
    await expect(runner.decodeLatents(new Float32Array(4 * 8 * 8).fill(0.1), [1, 4, 8, 8])).rejects.toThrow(/the VAE decoder's output hold NaN/);
  });

  it('refuses NaN initial latents given to generate()', async () => {
    const sd = StableDiffusion.load(TINY_SD);
    const latents = new Float32Array(4 * 8 * 8).fill(0.1);
    latents[0] = Infinity;
    await expect(generate(sd, { prompts: ['a cat'], steps: 2, width: 64, height: 64, latents })).rejects.toThrow(/the initial latents: Infinity at index 0/);
  });
});
