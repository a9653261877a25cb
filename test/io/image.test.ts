import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { createImage, enlarge, fromRgb8, imageFromTensor, imageToTensor, readImage, toRgb8 } from '../../src/io/image.ts';

const dir = mkdtempSync(join(tmpdir(), 'nuri-io-image-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** RGB of pixel (x, y) as 8-bit values. */
function pixel(image: { width: number; height: number; data: Float32Array }, x: number, y: number): number[] {
  const plane = image.width * image.height;
  return [0, 1, 2].map((c) => Math.round(image.data[c * plane + y * image.width + x] * 255));
}

async function writeRaw(name: string, pixels: number[], width: number, height: number, channels: 1 | 3 | 4): Promise<string> {
  const path = join(dir, name);
  await sharp(Buffer.from(pixels), { raw: { width, height, channels } }).toFile(path);
  return path;
}

/** A 30x10 image: red, green and blue thirds from left to right. */
async function writeThirds(name: string): Promise<string> {
  const pixels: number[] = [];
  for (let y = 0; y < 10; y++) {
    for (let x = 0; x < 30; x++) pixels.push(x < 10 ? 255 : 0, x >= 10 && x < 20 ? 255 : 0, x >= 20 ? 255 : 0);
  }
  return writeRaw(name, pixels, 30, 10, 3);
}

describe('readImage', () => {
  it('composites transparency on white', async () => {
    // opaque red, fully transparent blue, half-transparent black
    const path = await writeRaw('alpha.png', [255, 0, 0, 255, 0, 0, 255, 0, 0, 0, 0, 128], 3, 1, 4);
    const image = await readImage(path);
    expect(image).toMatchObject({ width: 3, height: 1, channels: 3 });
    expect(image.data).toHaveLength(9);
    expect(pixel(image, 0, 0)).toEqual([255, 0, 0]);
    expect(pixel(image, 1, 0)).toEqual([255, 255, 255]);
    for (const v of pixel(image, 2, 0)) expect(Math.abs(v - 127)).toBeLessThanOrEqual(1);
  });

  it('returns CHW floats in [0, 1] matching the file', async () => {
    const path = await writeRaw('rgb.png', [10, 20, 30, 40, 50, 60], 2, 1, 3);
    const image = await readImage(path);
    expect(Array.from(image.data, (v) => Math.round(v * 255))).toEqual([10, 40, 20, 50, 30, 60]);
  });

  it('expands greyscale to three channels', async () => {
    const path = await writeRaw('grey.png', [0, 128, 255, 64], 2, 2, 1);
    const image = await readImage(path);
    expect(pixel(image, 1, 0)).toEqual([128, 128, 128]);
    expect(pixel(image, 1, 1)).toEqual([64, 64, 64]);
  });

  it('resizes to cover and crops the centre', async () => {
    const image = await readImage(await writeThirds('thirds.png'), { width: 10, height: 10 });
    expect([image.width, image.height]).toEqual([10, 10]);
    for (let y = 0; y < 10; y++) for (let x = 0; x < 10; x++) expect(pixel(image, x, y)).toEqual([0, 255, 0]);
  });

  it('keeps the aspect ratio when only one side is given, stretches with fit "fill"', async () => {
    const path = await writeThirds('thirds2.png');
    const wide = await readImage(path, { width: 20 });
    expect([wide.width, wide.height]).toEqual([20, 7]);
    const filled = await readImage(path, { width: 8, height: 8, fit: 'fill' });
    expect([filled.width, filled.height]).toEqual([8, 8]);
    expect(pixel(filled, 0, 4)[0]).toBeGreaterThan(200); // red third still on the left
    const contained = await readImage(path, { width: 30, height: 30, fit: 'contain' });
    expect(pixel(contained, 15, 0)).toEqual([255, 255, 255]); // padded with white
  });

  it('reads JPEG and WebP', async () => {
    const source = sharp({ create: { width: 12, height: 8, channels: 3, background: { r: 200, g: 100, b: 50 } } });
    await source.clone().jpeg({ quality: 95 }).toFile(join(dir, 'a.jpg'));
    await source.clone().webp({ lossless: true }).toFile(join(dir, 'a.webp'));
    for (const name of ['a.jpg', 'a.webp']) {
      const image = await readImage(join(dir, name));
      expect([image.width, image.height]).toEqual([12, 8]);
      const [r, g, b] = pixel(image, 6, 4);
      expect(Math.abs(r - 200) + Math.abs(g - 100) + Math.abs(b - 50)).toBeLessThan(10);
    }
  });

  it('names the file in its errors', async () => {
    const missing = join(dir, 'missing.png');
    await expect(readImage(missing)).rejects.toThrow(`cannot open ${missing}: no such file`);
    const text = join(dir, 'notes.png');
    writeFileSync(text, 'not an image');
    await expect(readImage(text)).rejects.toThrow(`${text} is not a readable PNG, JPEG or WebP image`);
    const folder = join(dir, 'folder.png');
    mkdirSync(folder);
    await expect(readImage(folder)).rejects.toThrow(`${folder} is not a file`);
  });
});

describe('toRgb8 / fromRgb8', () => {
  it('rounds like numpy: clamp, x*255 in float32, half to even', () => {
    const values = [0.5 / 255, 1.5 / 255, 2.5 / 255, 126.5 / 255, 0.5, -0.2, 1.3, 1];
    const image = { width: values.length, height: 1, channels: 3 as const, data: new Float32Array(3 * values.length) };
    image.data.set(values);
    expect(Array.from(toRgb8(image).filter((_, i) => i % 3 === 0))).toEqual([0, 2, 2, 126, 128, 0, 255, 255]);
  });

  it('interleaves HWC and round-trips through fromRgb8', () => {
    const pixels = Uint8Array.from({ length: 4 * 3 * 3 }, (_, i) => (i * 37) % 256);
    const image = fromRgb8(pixels, 4, 3);
    expect(pixel(image, 1, 0)).toEqual([pixels[3], pixels[4], pixels[5]]);
    expect(Array.from(toRgb8(image))).toEqual(Array.from(pixels));
    expect(() => fromRgb8(pixels, 5, 3)).toThrow('is not 5x3x3');
  });
});

describe('tensors', () => {
  it('maps [-1, 1] NCHW batches to images and back', () => {
    const shape = [2, 3, 2, 2] as const;
    const tensor = Float32Array.from({ length: 24 }, (_, i) => i / 12 - 1); // [-1, 0.92]
    const second = imageFromTensor(tensor, 1, shape, '-1..1');
    expect(second).toMatchObject({ width: 2, height: 2, channels: 3 });
    expect(second.data[0]).toBeCloseTo(tensor[12] / 2 + 0.5, 6);
    const back = imageToTensor([imageFromTensor(tensor, 0, shape, '-1..1'), second], '-1..1');
    for (let i = 0; i < 24; i++) expect(back[i]).toBeCloseTo(tensor[i], 6);
  });

  it('clamps out-of-range values and passes [0, 1] through', () => {
    const image = imageFromTensor(Float32Array.from([-3, 0.25, 3]), 0, [1, 3, 1, 1], '-1..1');
    expect(Array.from(image.data)).toEqual([0, 0.625, 1]);
    const unit = imageFromTensor(Float32Array.from([0.1, 0.2, 1.5]), 0, [1, 3, 1, 1], '0..1');
    expect(Array.from(unit.data)).toEqual([Math.fround(0.1), Math.fround(0.2), 1]);
    expect(Array.from(imageToTensor([unit], '0..1'))).toEqual(Array.from(unit.data));
  });

  it('rejects bad shapes, indices and mixed sizes', () => {
    expect(() => imageFromTensor(new Float32Array(12), 0, [1, 4, 1, 3], '0..1')).toThrow('expected 3 channels');
    expect(() => imageFromTensor(new Float32Array(11), 0, [1, 3, 2, 2], '0..1')).toThrow('do not fill');
    expect(() => imageFromTensor(new Float32Array(12), 1, [1, 3, 2, 2], '0..1')).toThrow('out of range');
    expect(() => imageToTensor([createImage(2, 2), createImage(3, 2)], '0..1')).toThrow('image 1 is 3x2');
  });
});

describe('enlarge', () => {
  it('repeats each pixel in a factor × factor block, per channel', () => {
    const image = { width: 2, height: 1, channels: 3 as const, data: Float32Array.of(0.1, 0.2, 0.3, 0.4, 0.5, 0.6) };
    const big = enlarge(image, 2);
    expect([big.width, big.height]).toEqual([4, 2]);
    // channel planes: R = [0.1, 0.2], G = [0.3, 0.4], B = [0.5, 0.6]
    expect(Array.from(big.data.subarray(0, 8))).toEqual([0.1, 0.1, 0.2, 0.2, 0.1, 0.1, 0.2, 0.2].map(Math.fround));
    expect(Array.from(big.data.subarray(16, 24))).toEqual([0.5, 0.5, 0.6, 0.6, 0.5, 0.5, 0.6, 0.6].map(Math.fround));
    expect(enlarge(image, 1)).toBe(image);
    expect(() => enlarge(image, 1.5)).toThrow(/whole number/);
  });
});
