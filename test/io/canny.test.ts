// Canny edges on synthetic images whose edges are known: where they are, that they are one pixel
// thin, and how the double threshold with hysteresis keeps or drops weak ones.

import { describe, expect, it } from 'vitest';
import { canny } from '../../src/io/canny.ts';
import { type RgbImage, createImage } from '../../src/io/image.ts';

const SIZE = 64;

/** A gray image: `value(x, y)` in [0, 1] in all three channels. */
function gray(value: (x: number, y: number) => number): RgbImage {
  const image = createImage(SIZE, SIZE);
  const plane = SIZE * SIZE;
  for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) for (let c = 0; c < 3; c++) image.data[c * plane + y * SIZE + x] = value(x, y);
  return image;
}

/** A square of `level` on black covering [16, 48)². */
const square = (level: number) => gray((x, y) => (x >= 16 && x < 48 && y >= 16 && y < 48 ? level : 0));

const edgeAt = (e: RgbImage, x: number, y: number) => e.data[y * SIZE + x] === 1;
const edgeCount = (e: RgbImage) => e.data.subarray(0, SIZE * SIZE).reduce((n, v) => n + v, 0);

describe('canny', () => {
  it('finds the outline of a white square, one pixel thin, and nothing else', () => {
    const e = canny(square(1));
    // Every edge pixel lies on the boundary between pixels 15|16 or 47|48, in x or in y.
    const onBoundary = (v: number) => v === 15 || v === 16 || v === 47 || v === 48;
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        if (!edgeAt(e, x, y)) continue;
        const inBand = (v: number) => v >= 15 && v <= 48;
        expect((onBoundary(x) && inBand(y)) || (onBoundary(y) && inBand(x)), `edge at ${x},${y}`).toBe(true);
      }
    }
    // Along each straight side (corners aside) exactly one pixel across the edge is marked.
    for (let t = 19; t < 45; t++) {
      const across = (xs: number[], ys: number[]) => xs.flatMap((x) => ys.map((y) => edgeAt(e, x, y))).filter(Boolean).length;
      expect(across([12, 13, 14, 15, 16, 17, 18, 19], [t])).toBe(1); // left side
      expect(across([44, 45, 46, 47, 48, 49, 50, 51], [t])).toBe(1); // right side
      expect(across([t], [12, 13, 14, 15, 16, 17, 18, 19])).toBe(1); // top
      expect(across([t], [44, 45, 46, 47, 48, 49, 50, 51])).toBe(1); // bottom
    }
    // A colour picture gives the edges of its luma: a pure-green square like a gray one of 0.587.
    const green = createImage(SIZE, SIZE);
    const sq = square(1);
    green.data.set(sq.data.subarray(0, SIZE * SIZE), SIZE * SIZE);
    expect(canny(green).data).toEqual(canny(square(0.587)).data);
  });

  it('keeps weak edges only where they connect to strong ones (hysteresis), and drops faint ones', () => {
    // Gradient magnitude of a step of contrast c after the σ = 1 blur: ≈ 637·c (255 · 4 · (Φ(0.5) − Φ(−1.5))).
    expect(edgeCount(canny(square(0.1)))).toBe(0); // ≈ 64: under the low threshold
    expect(edgeCount(canny(square(0.25)))).toBe(0); // ≈ 159: weak, and connected to nothing strong
    expect(edgeCount(canny(square(0.25), { low: 100, high: 150 }))).toBeGreaterThan(100); // now strong

    // One vertical edge at 31|32 whose contrast fades from 1 (rows < 16) to 0.25 (rows ≥ 32): its
    // weak lower half is kept because it continues the strong upper half.
    const fading = gray((x, y) => (x < 32 ? 0 : 1 - 0.75 * Math.min(1, Math.max(0, (y - 16) / 16))));
    const e = canny(fading);
    for (let y = 0; y < SIZE; y++) expect(edgeAt(e, 31, y) || edgeAt(e, 32, y), `row ${y}`).toBe(true);
    expect(edgeCount(e)).toBe(SIZE);
    // Without hysteresis (low = high) the weak half is gone.
    const strict = canny(fading, { low: 200, high: 200 });
    for (let y = 36; y < SIZE; y++) expect(edgeAt(strict, 31, y) || edgeAt(strict, 32, y), `row ${y}`).toBe(false);
    expect(edgeAt(strict, 31, 8)).toBe(true);
  });

  it('refuses thresholds out of order', () => {
    expect(() => canny(square(1), { low: 200, high: 100 })).toThrow(/thresholds must satisfy 0 ≤ low ≤ high, got low 200, high 100/);
  });
});
