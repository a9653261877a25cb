import { describe, expect, it } from 'vitest';
import { imageGrid, wrapLabel } from '../../src/io/grid.ts';
import { createImage, type Rgb, type RgbImage } from '../../src/io/image.ts';

function pixel(image: RgbImage, x: number, y: number): number[] {
  const plane = image.width * image.height;
  return [0, 1, 2].map((c) => Math.round(image.data[c * plane + y * image.width + x] * 255));
}

const COLOURS: Rgb[] = [
  [1, 0, 0],
  [0, 1, 0],
  [0, 0, 1],
  [1, 1, 0],
  [0, 1, 1],
];
const as8 = (rgb: Rgb) => rgb.map((v) => v * 255);

describe('imageGrid', () => {
  it('lays tiles out row by row with padding around and between them', async () => {
    const tiles = COLOURS.map((colour) => createImage(4, 3, colour));
    const grid = await imageGrid(tiles, { columns: 3, padding: 2, background: [0, 0, 0] });
    expect([grid.width, grid.height]).toEqual([3 * 4 + 4 * 2, 2 * 3 + 3 * 2]);
    tiles.forEach((_, i) => {
      const left = 2 + (i % 3) * 6;
      const top = 2 + Math.floor(i / 3) * 5;
      expect(pixel(grid, left, top)).toEqual(as8(COLOURS[i]));
      expect(pixel(grid, left + 3, top + 2)).toEqual(as8(COLOURS[i]));
      expect(pixel(grid, left - 1, top)).toEqual([0, 0, 0]); // padding
    });
    expect(pixel(grid, 2 + 2 * 6, 2 + 5)).toEqual([0, 0, 0]); // the sixth cell is empty
  });

  it('defaults to a square-ish layout with no padding and centres smaller images', async () => {
    const grid = await imageGrid([createImage(4, 4, [1, 0, 0]), createImage(2, 2, [0, 0, 1]), createImage(4, 4), createImage(4, 4)]);
    expect([grid.width, grid.height]).toEqual([8, 8]);
    expect(pixel(grid, 4, 0)).toEqual([255, 255, 255]); // white around the small tile
    expect(pixel(grid, 5, 1)).toEqual([0, 0, 255]);
    expect(pixel(grid, 6, 2)).toEqual([0, 0, 255]);
    expect(pixel(grid, 7, 3)).toEqual([255, 255, 255]);
  });

  it('writes labels under the tiles', async () => {
    const tiles = [createImage(48, 16, [1, 0, 0]), createImage(48, 16, [0, 1, 0])];
    const grid = await imageGrid(tiles, { labels: ['cat', 'hat'], fontSize: 12, background: [1, 1, 1] });
    const labelHeight = 18;
    expect([grid.width, grid.height]).toEqual([96, 16 + labelHeight]);
    expect(pixel(grid, 0, 0)).toEqual([255, 0, 0]);
    expect(pixel(grid, 95, 15)).toEqual([0, 255, 0]);
    for (const left of [0, 48]) {
      let ink = 0;
      for (let y = 16; y < grid.height; y++) for (let x = left; x < left + 48; x++) if (pixel(grid, x, y)[0] < 128) ink++;
      expect(ink).toBeGreaterThan(5); // dark text on white
    }
    const dark = await imageGrid(tiles, { labels: ['cat', 'hat'], background: [0, 0, 0] });
    let light = 0;
    for (let y = 16; y < dark.height; y++) for (let x = 0; x < 48; x++) if (pixel(dark, x, y)[0] > 128) light++;
    expect(light).toBeGreaterThan(5); // light text on black
  });

  it('escapes label text and rejects bad options', async () => {
    const tile = createImage(32, 8);
    await expect(imageGrid([tile], { labels: ['<a & "b">'] })).resolves.toBeDefined();
    await expect(imageGrid([])).rejects.toThrow('no images');
    await expect(imageGrid([tile], { labels: [] })).rejects.toThrow('0 labels for 1 images');
    await expect(imageGrid([tile], { columns: 0 })).rejects.toThrow('columns');
  });
});

describe('labels on small tiles', () => {
  it('wraps words to the width, cutting a word longer than a line', () => {
    // (32 − 2) px / (0.6 · 8 px) = 6 characters a line
    expect(wrapLabel('a cat wearing a red hat', 32, 8)).toEqual(['a cat', 'wearin', 'g a', 'red', 'hat']);
    expect(wrapLabel('a cat wearing a red hat', 120, 8)).toEqual(['a cat wearing a red hat']);
    expect(wrapLabel('', 32, 8)).toEqual(['']);
  });

  it('never cuts a label at the tile edge: no ink on the first and last columns, and taller rows for more lines', async () => {
    const tiles = [createImage(32, 32, [0.5, 0.5, 0.5]), createImage(32, 32, [0.5, 0.5, 0.5])];
    const labels = ['a cat wearing a red hat', 'a dog wearing a red hat'];
    const grid = await imageGrid(tiles, { columns: 2, labels, fontSize: 8 });
    const lines = Math.max(...labels.map((l) => wrapLabel(l, 32, 8).length));
    expect(grid.height).toBe(32 + Math.ceil(8 * (1.5 + 1.2 * (lines - 1))));
    const plane = grid.width * grid.height;
    const ink = (x: number) => {
      let n = 0;
      for (let y = 32; y < grid.height; y++) if (grid.data[y * grid.width + x] < 0.9 || grid.data[plane + y * grid.width + x] < 0.9) n++;
      return n;
    };
    for (const x of [0, 31, 32, 63]) expect(ink(x)).toBe(0);
    expect(ink(16) + ink(15) + ink(14) + ink(17)).toBeGreaterThan(0);
  });
});
