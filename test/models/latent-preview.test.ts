import { describe, expect, it } from 'vitest';
import { SD1_LATENT_RGB_FACTORS, latentPreview } from '../../src/models/latent-preview.ts';

describe('latentPreview', () => {
  it('maps each latent pixel through the 4×3 factors, from [-1, 1] to [0, 1]', () => {
    // [1, 4, 1, 2]: pixel 0 is latent channel 0 alone, pixel 1 is channel 3 at −1.
    const latents = Float32Array.of(1, 0, 0, 0, 0, 0, 0, -1);
    const [image] = latentPreview(latents, [1, 4, 1, 2]);
    expect(image).toMatchObject({ width: 2, height: 1, channels: 3 });
    const at = (rgb: number, i: number) => image.data[rgb * 2 + i];
    for (let rgb = 0; rgb < 3; rgb++) {
      expect(at(rgb, 0)).toBeCloseTo((SD1_LATENT_RGB_FACTORS[0][rgb] + 1) / 2, 6);
      expect(at(rgb, 1)).toBeCloseTo((-SD1_LATENT_RGB_FACTORS[3][rgb] + 1) / 2, 6);
    }
  });

  it('gives one preview per batch item, clamped, with a bias', () => {
    const latents = new Float32Array(2 * 4 * 2 * 2).fill(10);
    const previews = latentPreview(latents, [2, 4, 2, 2], { bias: [-100, 0, 100] });
    expect(previews).toHaveLength(2);
    for (const p of previews) expect([p.data[0], p.data[4], p.data[8]]).toEqual([0, expect.any(Number), 1]);
  });

  it('checks the channel count and size', () => {
    expect(() => latentPreview(new Float32Array(3), [1, 3, 1, 1])).toThrow(/3 latent channels/);
    expect(() => latentPreview(new Float32Array(3), [1, 4, 1, 1])).toThrow(/do not fill/);
  });
});
