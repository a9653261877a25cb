// readImage goes by content, not by name: a GIF, TIFF or SVG named .png is refused (the README
// promises PNG, JPEG and WebP), saying what it is; the three promised formats read.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { readImage } from '../../src/io/image.ts';

const pixels = () => sharp(Buffer.alloc(4 * 4 * 3, 200), { raw: { width: 4, height: 4, channels: 3 } });

describe('image formats', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-format-'));
  const save = (name: string, bytes: Buffer) => {
    writeFileSync(join(dir, name), bytes);
    return join(dir, name);
  };

  for (const [format, encode] of [
    ['png', () => pixels().png().toBuffer()],
    ['jpeg', () => pixels().jpeg().toBuffer()],
    ['webp', () => pixels().webp().toBuffer()],
  ] as const) {
    it(`reads ${format}`, async () => {
      expect((await readImage(save(`ok-${format}.png`, await encode()))).width).toBe(4);
    });
  }

  for (const [format, encode] of [
    ['GIF', () => pixels().gif().toBuffer()],
    ['TIFF', () => pixels().tiff().toBuffer()],
    ['SVG', async () => Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4" fill="red"/></svg>')],
  ] as const) {
    it(`refuses ${format} named .png, naming the file and the format`, async () => {
      const path = save(`${format}.png`, await encode());
      await expect(readImage(path)).rejects.toThrow(`readImage: ${path} is a ${format} image (by its content); only PNG, JPEG and WebP are read`);
    });
  }
});
