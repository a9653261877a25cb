import { describe, expect, it } from 'vitest';
import { dominantColour, dominantHue, hueName } from '../../src/data/colour.ts';
import { createImage, type Rgb, type RgbImage } from '../../src/io/image.ts';

const hex = (h: string): Rgb => [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16) / 255) as unknown as Rgb;

/** A 32×32 white image with a centred square of `fill` covering `share` of it, plus optional extras. */
function blob(fill: Rgb, share = 0.5, extra?: (image: RgbImage, set: (x: number, y: number, c: Rgb) => void) => void): RgbImage {
  const image = createImage(32, 32, [1, 1, 1]);
  const set = (x: number, y: number, c: Rgb) => {
    for (let k = 0; k < 3; k++) image.data[k * 1024 + y * 32 + x] = c[k];
  };
  const side = Math.round(Math.sqrt(share) * 32);
  const start = Math.floor((32 - side) / 2);
  for (let y = start; y < start + side; y++) for (let x = start; x < start + side; x++) set(x, y, fill);
  extra?.(image, set);
  return image;
}

describe('hueName', () => {
  it('names hues around the circle, red wrapping', () => {
    const cases: [number, string][] = [
      [0, 'red'], [355, 'red'], [-5, 'red'], [365, 'red'], [30, 'orange'], [55, 'yellow'], [120, 'green'],
      [180, 'cyan'], [220, 'blue'], [275, 'purple'], [325, 'pink'],
    ];
    for (const [hue, name] of cases) expect(hueName(hue), `${hue}°`).toBe(name);
  });
});

describe('dominantHue', () => {
  it('finds the hue of a coloured shape and ignores the white background', () => {
    const estimate = dominantHue(blob([0, 0, 1], 0.1));
    expect(estimate).not.toBeNull();
    expect(estimate!.hue).toBeCloseTo(240, 5);
    expect(estimate!.chromaticShare).toBe(1);
  });

  it('takes the larger of two hues and ignores grey pixels', () => {
    const image = blob(hex('dd2e44'), 0.4, (_, set) => {
      for (let x = 0; x < 32; x++) set(x, 0, [0, 0.6, 0]); // a thin green line
      for (let x = 0; x < 32; x++) for (let y = 30; y < 32; y++) set(x, y, [0.5, 0.5, 0.5]); // grey
    });
    expect(hueName(dominantHue(image)!.hue)).toBe('red');
  });

  it('has no dominant hue for grey, black or blank images', () => {
    expect(dominantHue(blob([0.5, 0.5, 0.5]))).toBeNull();
    expect(dominantHue(blob([0.05, 0.05, 0.1]))).toBeNull();
    expect(dominantHue(createImage(8, 8, [1, 1, 1]))).toBeNull();
  });
});

describe('dominantColour', () => {
  it('names emoji-like colours', () => {
    const cases: [string, string][] = [
      ['dd2e44', 'red'], ['f4900c', 'orange'], ['fdcb58', 'yellow'], ['78b159', 'green'], ['5dadec', 'blue'],
      ['aa8ed6', 'purple'], ['c1694f', 'brown'], ['8b4513', 'brown'], ['f7a4c0', 'pink'], ['292f33', 'black'],
      ['888888', 'grey'],
    ];
    for (const [colour, name] of cases) expect(dominantColour(blob(hex(colour))), `#${colour}`).toBe(name);
  });

  it('calls an outlined white shape white', () => {
    const outlined = blob([1, 1, 1], 0.5, (_, set) => {
      for (let i = 6; i < 26; i++) [[i, 6], [i, 25], [6, i], [25, i]].forEach(([x, y]) => set(x, y, [0.7, 0.7, 0.7]));
    });
    expect(dominantColour(outlined)).toBe('white');
    expect(dominantColour(createImage(8, 8, [1, 1, 1]))).toBe('white');
  });
});
