import { describe, expect, it } from 'vitest';
import { heatMap, overlay } from '../../src/io/heatmap.ts';
import { createImage, type RgbImage } from '../../src/io/image.ts';

function pixel(image: RgbImage, x: number, y: number): number[] {
  const plane = image.width * image.height;
  return [0, 1, 2].map((c) => Math.round(image.data[c * plane + y * image.width + x] * 255));
}

const VIRIDIS_FIRST = [0x44, 0x01, 0x54];
const VIRIDIS_LAST = [0xfd, 0xe7, 0x25];

describe('heatMap', () => {
  it('maps the minimum to the first colour and the maximum to the last', () => {
    const values = Float32Array.from([3, 5, 7, 9, -1, 2]); // 2x3, min at (1, 1), max at (0, 1)
    const image = heatMap(values, 2, 3);
    expect(image).toMatchObject({ width: 3, height: 2, channels: 3 });
    expect(pixel(image, 1, 1)).toEqual(VIRIDIS_FIRST);
    expect(pixel(image, 0, 1)).toEqual(VIRIDIS_LAST);
    const inferno = heatMap(values, 2, 3, { colorMap: 'inferno' });
    expect(pixel(inferno, 1, 1)).toEqual([0, 0, 4]);
    expect(pixel(inferno, 0, 1)).toEqual([0xfc, 0xff, 0xa4]);
  });

  it('hits the middle control point at the midpoint', () => {
    const image = heatMap(Float32Array.from([0, 0.5, 1]), 1, 3);
    expect(pixel(image, 1, 0)).toEqual([0x21, 0x91, 0x8c]);
  });

  it('upscales bilinearly, keeping corner values and symmetry', () => {
    const values = Float32Array.from([0, 1, 1, 0]);
    const image = heatMap(values, 2, 2, { size: 8 });
    expect([image.width, image.height]).toEqual([8, 8]);
    expect(pixel(image, 0, 0)).toEqual(VIRIDIS_FIRST);
    expect(pixel(image, 7, 0)).toEqual(VIRIDIS_LAST);
    expect(pixel(image, 7, 7)).toEqual(VIRIDIS_FIRST);
    expect(pixel(image, 3, 3)).toEqual(pixel(image, 4, 4));
    expect(pixel(image, 3, 4)).toEqual(pixel(image, 4, 3));
    expect(pixel(image, 3, 3)).not.toEqual(VIRIDIS_FIRST);
    const wide = heatMap(values, 2, 2, { size: { width: 6, height: 4 } });
    expect([wide.width, wide.height]).toEqual([6, 4]);
  });

  it('handles constant maps and a fixed range', () => {
    const flat = heatMap(new Float32Array(4).fill(2), 2, 2);
    expect(Array.from(flat.data).every(Number.isFinite)).toBe(true);
    expect(pixel(flat, 1, 1)).toEqual(VIRIDIS_FIRST);
    const fixed = heatMap(Float32Array.from([-5, 0.5, 5]), 1, 3, { range: [0, 1] });
    expect(pixel(fixed, 0, 0)).toEqual(VIRIDIS_FIRST);
    expect(pixel(fixed, 1, 0)).toEqual([0x21, 0x91, 0x8c]);
    expect(pixel(fixed, 2, 0)).toEqual(VIRIDIS_LAST);
    expect(() => heatMap(new Float32Array(5), 2, 2)).toThrow('5 values are not 2x2');
  });
});

describe('overlay', () => {
  it('blends by alpha and needs equal sizes', () => {
    const image = createImage(2, 2, [1, 1, 1]);
    const heat = createImage(2, 2, [0, 0.5, 1]);
    expect(pixel(overlay(image, heat, 0), 0, 0)).toEqual([255, 255, 255]);
    expect(pixel(overlay(image, heat, 1), 0, 0)).toEqual([0, 128, 255]);
    expect(Array.from(overlay(image, heat, 0.5).data.subarray(0, 1))).toEqual([0.5]);
    expect(() => overlay(image, createImage(3, 2), 0.5)).toThrow('heat map is 3x2, image is 2x2');
  });
});
