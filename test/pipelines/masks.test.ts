// The mask helpers inpainting and local blend share, on hand-checked cases: torch's nearest
// resize, mixing, PIL's grey levels, binarising, AUTOMATIC1111's Gaussian mask blur and fill, and the
// outpainting canvas and its spec.

import { describe, expect, it } from 'vitest';
import { createImage } from '../../src/io/image.ts';
import { outpaintCanvas, parseOutpaint } from '../../src/pipelines/inpaint.ts';
import { binarize, blurMask, fillMaskedArea, maskFromImage, mixByMask, resizeNearest } from '../../src/pipelines/masks.ts';

describe('masks', () => {
  it('resizes as torch nearest: 128 → 16 takes the pixel at 8i; 3 → 5 repeats 0, 0, 1, 1, 2', () => {
    const big = Float32Array.from({ length: 16 * 16 }, (_, i) => i);
    const small = resizeNearest(big, 16, 16, 2, 2);
    expect(Array.from(small)).toEqual([0, 8, 128, 136]);
    expect(Array.from(resizeNearest(Float32Array.of(0, 1, 2), 1, 3, 1, 5))).toEqual([0, 0, 1, 1, 2]);
  });

  it('mixes by a mask per position, for every channel and item', () => {
    const base = Float32Array.of(1, 1, 1, 1, 1, 1, 1, 1);
    const over = Float32Array.of(3, 3, 3, 3, 3, 3, 3, 3);
    expect(Array.from(mixByMask(base, over, [0, 1, 0.5, 0]))).toEqual([1, 3, 2, 1, 1, 3, 2, 1]);
    expect(() => mixByMask(base, over, [0, 1, 0])).toThrow(/do not fit a mask of 3/);
  });

  it("grey levels as PIL's convert('L'), binarised at ½ (127 → 0, 128 → 1)", () => {
    const image = createImage(3, 1);
    image.data.set([1, 0, 127 / 255, /* G */ 0, 1, 127 / 255, /* B */ 0, 0, 128 / 255]);
    const grey = maskFromImage(image);
    // (255·19595 + 0x8000) >> 16 = 76; 255·38470 → 150; (127·(19595+38470) + 128·7471 + 0x8000) >> 16 = 127
    expect(Array.from(grey.data, (v) => Math.round(v * 255))).toEqual([76, 150, 127]);
    expect(Array.from(binarize({ width: 4, height: 1, data: Float32Array.of(127 / 255, 128 / 255, 0, 1) }).data)).toEqual([0, 1, 0, 1]);
  });

  it('blurs with a normalised Gaussian of 2·⌊2.5σ + ½⌋ + 1 taps, reflecting at the edges', () => {
    const step = { width: 8, height: 1, data: Float32Array.of(0, 0, 0, 0, 1, 1, 1, 1) };
    const soft = blurMask(step, 1);
    // Symmetric about the step: v(3) + v(4) = 1, rising, and the far ends (2.5σ away: 3 taps) settled.
    expect(soft.data[3] + soft.data[4]).toBeCloseTo(1, 6);
    for (let i = 1; i < 8; i++) expect(soft.data[i]).toBeGreaterThanOrEqual(soft.data[i - 1]);
    expect(soft.data[0]).toBeCloseTo(0, 6);
    const flat = blurMask({ width: 3, height: 3, data: new Float32Array(9).fill(0.25) }, 2);
    for (const v of flat.data) expect(v).toBeCloseTo(0.25, 6);
    expect(blurMask(step, 0)).toBe(step);
    expect(() => blurMask(step, -1)).toThrow(/mask blur must be a number ≥ 0, got -1/);
  });

  it("fills the masked area with the colours around it (A1111's fill), keeping the rest exactly", () => {
    // 16×4: blue on the left quarter, red on the right quarter, the middle half masked.
    const image = createImage(16, 4, [0, 1, 0]);
    const plane = 64;
    for (let i = 0; i < plane; i++) {
      const x = i % 16;
      if (x < 4) [image.data[i], image.data[plane + i], image.data[2 * plane + i]] = [0, 0, 1];
      if (x >= 12) [image.data[i], image.data[plane + i], image.data[2 * plane + i]] = [1, 0, 0];
    }
    const mask = { width: 16, height: 4, data: Float32Array.from({ length: plane }, (_, i) => (i % 16 >= 4 && i % 16 < 12 ? 1 : 0)) };
    const filled = fillMaskedArea(image, mask);
    const px = (x: number) => [0, 1, 2].map((c) => filled.data[c * plane + x]);
    for (const x of [0, 3, 12, 15]) expect(px(x)).toEqual([0, 1, 2].map((c) => image.data[c * plane + x]));
    // The green that was masked is gone; each side takes its neighbour's colour.
    expect(px(4)[2]).toBeGreaterThan(0.9);
    expect(px(11)[0]).toBeGreaterThan(0.9);
    for (let x = 4; x < 12; x++) expect(px(x)[1]).toBeLessThan(1e-6);
    expect(px(4)[2]).toBeGreaterThan(px(7)[2]);
  });

  it('outpainting grows the canvas with repeated edges and masks the border (and the given mask)', () => {
    const image = createImage(2, 1);
    image.data.set([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]); // R, G, B planes of 2 pixels
    const { image: canvas, mask } = outpaintCanvas(image, { left: 1, bottom: 1 }, { width: 2, height: 1, data: Float32Array.of(0, 1) });
    expect([canvas.width, canvas.height]).toEqual([3, 2]);
    expect(Array.from(canvas.data.subarray(0, 6), (v) => Number(v.toFixed(3)))).toEqual([0.1, 0.1, 0.2, 0.1, 0.1, 0.2]);
    expect(Array.from(mask.data)).toEqual([1, 0, 1, 1, 1, 1]);
    expect(() => outpaintCanvas(image, { top: -8 })).toThrow(/top must be a whole number of pixels ≥ 0, got -8/);
  });

  it('reads --outpaint specs, refusing unknown sides and repeats', () => {
    expect(parseOutpaint('left=128, right=64,top=0')).toEqual({ left: 128, right: 64, top: 0 });
    expect(() => parseOutpaint('middle=8')).toThrow(/"middle=8" is not SIDE=PIXELS with SIDE one of left, right, top, bottom/);
    expect(() => parseOutpaint('left=8,left=16')).toThrow(/left is given twice/);
  });
});
