// The Prompt-to-Prompt measurements of the default model (issue 11): the picture metrics on
// pictures whose answers are known, and one whole run on the shipped model at 2 steps, which must
// give a figure for every check (a check that throws or returns NaN would hide a broken edit).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { foregroundMask, hueStats } from '../../src/data/colour.ts';
import type { RgbImage } from '../../src/io/image.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { BLENDS, HEAT_MAPS, SWAPS, editChecks, luminanceCorrelation } from '../../src/training/edit-checks.ts';
const DEFAULT_MODEL = join(import.meta.dirname, '..', '..', 'models', 'default');

/** A white 8×8 picture with a pure-colour square in its top-left 4×4. */
function square(rgb: [number, number, number]): RgbImage {
  const data = new Float32Array(3 * 64).fill(1);
  for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) rgb.forEach((v, c) => (data[c * 64 + y * 8 + x] = v));
  return { width: 8, height: 8, channels: 3, data };
}

describe('Prompt-to-Prompt checks of the default model', () => {
  it('measures layout, object and hue on pictures with known answers', () => {
    const red = square([0.9, 0.1, 0.1]);
    const blue = square([0.1, 0.1, 0.9]);
    expect(luminanceCorrelation(red, red)).toBeCloseTo(1, 6);
    const inverted: RgbImage = { ...red, data: red.data.map((v) => 1 - v) };
    expect(luminanceCorrelation(red, inverted)).toBeCloseTo(-1, 6);
    expect(foregroundMask(red).reduce((a, b) => a + b, 0)).toBe(16);
    expect(hueStats(red, 'red')).toEqual({ objectShare: 1, pictureShare: 0.25, saturation: expect.closeTo(0.889, 3) });
    expect(hueStats(blue, 'red').objectShare).toBe(0);
  });

  it('gives every figure on the shipped model', { timeout: 300_000 }, async () => {
    const sd = StableDiffusion.load(DEFAULT_MODEL);
    const lines: string[] = [];
    const r = await editChecks(sd, { seeds: [1], steps: 2, onLine: (l) => lines.push(l) });
    expect(r.swap.pairs).toBe(SWAPS.length);
    for (const v of [r.swap.withPromptToPrompt, r.swap.withoutPromptToPrompt]) expect(Math.abs(v)).toBeLessThanOrEqual(1);
    expect(r.blend.runs + r.blend.failures.length).toBe(BLENDS.length);
    expect(r.blend.failures).toEqual([]);
    expect(r.heatMaps.prompts).toBe(HEAT_MAPS.length);
    for (const v of [r.heatMaps.massOnObject, r.heatMaps.objectArea, r.blend.outsideChange, ...Object.values(r.reweight.byFactor).map((s) => s.objectShare)]) {
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(1);
    }
    expect(lines).toHaveLength(4);
  });
});
