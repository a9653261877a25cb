// A toy captioned image set for training tests: coloured shapes on white, written as PNG + .txt.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createImage, type Rgb } from '../../src/io/image.ts';
import { writePng } from '../../src/io/png.ts';

const COLOURS: [string, Rgb][] = [
  ['red', [0.9, 0.1, 0.1]],
  ['green', [0.1, 0.8, 0.2]],
  ['blue', [0.1, 0.2, 0.9]],
  ['yellow', [0.95, 0.85, 0.1]],
];
const SHAPES = ['square', 'circle'] as const;

function inside(shape: (typeof SHAPES)[number], x: number, y: number, size: number): boolean {
  const c = (size - 1) / 2;
  const r = size * 0.35;
  return shape === 'square' ? Math.abs(x - c) <= r && Math.abs(y - c) <= r : (x - c) ** 2 + (y - c) ** 2 <= r * r;
}

/** 8 images (4 colours × square/circle) of `size` pixels with captions like "a red circle"; returns the folder. */
export async function writeToyShapes(size: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-shapes-'));
  for (const [colour, rgb] of COLOURS) {
    for (const shape of SHAPES) {
      const image = createImage(size, size, [1, 1, 1]);
      const plane = size * size;
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) if (inside(shape, x, y, size)) for (let ch = 0; ch < 3; ch++) image.data[ch * plane + y * size + x] = rgb[ch];
      const name = `${colour}-${shape}`;
      await writePng(join(dir, `${name}.png`), image);
      writeFileSync(join(dir, `${name}.txt`), `a ${colour} ${shape}`);
    }
  }
  return dir;
}
