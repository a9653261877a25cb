// A single-file checkpoint generates exactly what the same weights do as a diffusers folder.

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generate } from '../../src/pipelines/generate.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { FIXTURES, TINY_SD } from '../fixtures.ts';

describe('single-file checkpoint', () => {
  it('gives the same latents and image as the diffusers folder', async () => {
    // The CompVis YAML schema has no field for the text encoder's head count and the tiny width
    // (32) does not imply one: Nuri reads `num_heads` under cond_stage_config.params.
    const yaml = `${readFileSync(join(FIXTURES, 'tiny-sd-single.yaml'), 'utf8').trimEnd()}\n      params:\n        num_heads: 4\n`;
    const config = join(mkdtempSync(join(tmpdir(), 'nuri-single-')), 'tiny.yaml');
    writeFileSync(config, yaml);
    const single = StableDiffusion.load(join(FIXTURES, 'tiny-sd-single.safetensors'), { config, tokenizer: join(TINY_SD, 'tokenizer') });
    const folder = StableDiffusion.load(TINY_SD);
    const options = { prompts: ['a photo of a cat'], steps: 4, width: 64, height: 64, seed: 11, guidance: 7.5 };
    const [a, b] = [await generate(single, options), await generate(folder, options)];
    let maxDiff = 0;
    a.latents.forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - b.latents[i]))));
    expect(maxDiff).toBeLessThan(1e-6);
    expect(Array.from(a.images[0].data.subarray(0, 64))).toEqual(Array.from(b.images[0].data.subarray(0, 64)));
  });

  it('without a config the non-standard tiny shapes are refused with a pointer to --config', () => {
    expect(() => StableDiffusion.load(join(FIXTURES, 'tiny-sd-single.safetensors'), { tokenizer: join(TINY_SD, 'tokenizer') })).toThrow(/--config/);
  });
});
