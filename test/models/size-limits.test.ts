// Picture sizes are checked before any work: sides must be multiples of the VAE's downscale (the
// UNet takes any latent size), and the largest attention-score matrix must fit the memory budget — a
// 4096² picture on the tiny model is refused up front, saying the limit and what would fit.

import { afterEach, describe, expect, it } from 'vitest';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { attentionBudget, checkPictureSize, sizeMultiple } from '../../src/models/size-limits.ts';
import { TINY_SD } from '../fixtures.ts';

describe('picture size limits', () => {
  const { unet, vae } = loadStableDiffusion(TINY_SD);
  const check = (width: number, height: number, batch = 1) => () => checkPictureSize(unet.config, vae.config, { batch, width, height, guided: true });
  afterEach(() => delete process.env.NURI_MAX_ATTENTION_GB);

  it("needs sides that are multiples of the VAE's downscale, whatever the UNet's levels", () => {
    expect(sizeMultiple(vae.config)).toBe(8);
    expect(check(64, 128)).not.toThrow();
    expect(check(72, 40)).not.toThrow(); // 9×5 latents: the UNet rounds up and meets its skips
    expect(check(76, 72)).toThrow(/multiples of 8 for this model \(the VAE's downscale\), got 76×72/);
  });

  it('refuses 4096² up front, saying the attention memory, the limit and what fits', () => {
    // level 0: 2 (guidance) × 8 heads × (512·512)² positions × 4 bytes = 4096 GiB
    expect(check(4096, 4096)).toThrow(/4096×4096 \(batch 1\) is too large: the attention at UNet level 0 needs 4096\.0 GB .*\[2, 8, 262144, 262144\] float32.*about \d+×\d+ fits/);
  });

  it('takes the budget from $NURI_MAX_ATTENTION_GB, and the suggested size fits it', () => {
    process.env.NURI_MAX_ATTENTION_GB = '1';
    expect(attentionBudget()).toBe(2 ** 30);
    // 2 × 8 × N² × 4 ≤ 2³⁰ ⇒ N ≤ 4096 positions at level 0 ⇒ 64² latents ⇒ 512 px.
    const message = (() => {
      try {
        check(1024, 1024)();
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    })();
    const fits = Number(/about (\d+)×/.exec(message)?.[1]);
    expect(fits).toBe(512);
    expect(check(fits, fits)).not.toThrow();
    expect(check(fits + 64, fits + 64)).toThrow(/too large/);
  });
});
