import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { PNG } from 'pngjs';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { createImage, readImage, toRgb8 } from '../../src/io/image.ts';
import { encodePng, insertTextChunks, parsePngText, readPngText, writePng } from '../../src/io/png.ts';

const dir = mkdtempSync(join(tmpdir(), 'nuri-io-png-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function randomImage(width: number, height: number) {
  const image = createImage(width, height);
  let state = 12345;
  for (let i = 0; i < image.data.length; i++) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    image.data[i] = state / 2 ** 31;
  }
  return image;
}

/** Chunk types of a PNG in file order. */
function chunkTypes(png: Buffer): string[] {
  const types: string[] = [];
  for (let offset = 8; offset < png.length; offset += 12 + png.readUInt32BE(offset)) {
    types.push(png.toString('latin1', offset + 4, offset + 8));
  }
  return types;
}

const PARAMETERS = 'a cat\nNegative prompt: blurry\nSteps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 17x9';

describe('writePng', () => {
  it('round-trips pixels exactly after 8-bit quantisation', async () => {
    const image = randomImage(17, 9);
    const path = join(dir, 'round.png');
    await writePng(path, image, { parameters: PARAMETERS });
    const back = await readImage(path);
    expect([back.width, back.height]).toEqual([17, 9]);
    expect(toRgb8(back).equals(toRgb8(image))).toBe(true);
  });

  it('stores parameters and other text, Latin-1 in tEXt and the rest in iTXt, after IHDR', async () => {
    const path = join(dir, 'text.png');
    const text = { Software: 'Nuri 0.1', Title: 'café', Description: 'grinning face 😀 — 笑' };
    await writePng(path, createImage(4, 4, [0.2, 0.4, 0.6]), { parameters: PARAMETERS, text });
    expect(readPngText(path)).toEqual({ ...text, parameters: PARAMETERS });
    const types = chunkTypes(readFileSync(path));
    expect(types.slice(0, 5)).toEqual(['IHDR', 'tEXt', 'tEXt', 'iTXt', 'tEXt']);
    expect(types.at(-1)).toBe('IEND');
  });

  it('writes a PNG that sharp and pngjs decode (pngjs checks every CRC)', async () => {
    const image = randomImage(6, 5);
    const path = join(dir, 'decode.png');
    await writePng(path, image, { parameters: 'prompt 😀\nSteps: 1' });
    const meta = await sharp(path).metadata();
    expect(meta).toMatchObject({ format: 'png', width: 6, height: 5, channels: 3 });
    const decoded = PNG.sync.read(readFileSync(path), { checkCRC: true });
    const rgb = toRgb8(image);
    for (let i = 0; i < 30; i++) {
      expect([decoded.data[4 * i], decoded.data[4 * i + 1], decoded.data[4 * i + 2]]).toEqual([rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]]);
    }
  });

  it('replaces an existing file', async () => {
    const path = join(dir, 'again.png');
    await writePng(path, createImage(2, 2), { parameters: 'first' });
    await writePng(path, createImage(3, 3), { parameters: 'second' });
    expect(readPngText(path)).toEqual({ parameters: 'second' });
    expect((await sharp(path).metadata()).width).toBe(3);
  });

  it('fails clearly and leaves nothing behind', async () => {
    const folder = join(dir, 'atomic');
    mkdirSync(folder);
    const missing = join(folder, 'no-such-folder', 'out.png');
    await expect(writePng(missing, createImage(2, 2))).rejects.toThrow(
      `writePng: cannot write ${missing}: folder ${join(folder, 'no-such-folder')} does not exist`,
    );
    // renaming over a directory fails after the temporary file was written: it must be removed
    const blocked = join(folder, 'blocked.png');
    mkdirSync(blocked);
    await expect(writePng(blocked, createImage(2, 2))).rejects.toThrow(`cannot write ${blocked}`);
    expect(readdirSync(folder)).toEqual(['blocked.png']);
  });

  it('rejects keywords the PNG spec does not allow', async () => {
    await expect(encodePng(createImage(1, 1), { text: { '': 'x' } })).rejects.toThrow('keyword');
    await expect(encodePng(createImage(1, 1), { text: { ['k'.repeat(80)]: 'x' } })).rejects.toThrow('keyword');
    expect(() => insertTextChunks(Buffer.from('nope'), {})).toThrow('not a PNG');
  });
});

describe('readPngText', () => {
  it('reads zTXt and compressed iTXt written by other tools', async () => {
    const png = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#000' } }).png().toBuffer();
    const chunk = (type: string, data: Buffer) => {
      const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
      const out = Buffer.alloc(body.length + 8);
      out.writeUInt32BE(data.length, 0);
      body.copy(out, 4);
      out.writeUInt32BE(crc32(body), body.length + 4);
      return out;
    };
    const ztxt = chunk('zTXt', Buffer.concat([Buffer.from('Comment\0\0', 'latin1'), deflateSync(Buffer.from('squeezed', 'latin1'))]));
    const itxt = chunk('iTXt', Buffer.concat([Buffer.from('parameters\0\x01\0en\0\0', 'latin1'), deflateSync(Buffer.from('ünïcode ✓', 'utf8'))]));
    const withText = Buffer.concat([png.subarray(0, 33), ztxt, itxt, png.subarray(33)]);
    expect(parsePngText(withText)).toEqual({ Comment: 'squeezed', parameters: 'ünïcode ✓' });
    PNG.sync.read(withText, { checkCRC: true });
  });

  it('returns nothing for a PNG without text and names the file in errors', async () => {
    const plain = join(dir, 'plain.png');
    await sharp({ create: { width: 2, height: 2, channels: 3, background: '#fff' } }).png().toFile(plain);
    expect(readPngText(plain)).toEqual({});
    const missing = join(dir, 'missing.png');
    expect(() => readPngText(missing)).toThrow(`readPngText: cannot read ${missing}: no such file`);
    const notPng = join(dir, 'not.png');
    writeFileSync(notPng, 'hello, world');
    expect(() => readPngText(notPng)).toThrow(`readPngText: ${notPng}: not a PNG file`);
    const truncated = join(dir, 'truncated.png');
    writeFileSync(truncated, readFileSync(plain).subarray(0, 40));
    expect(() => readPngText(truncated)).toThrow('truncated PNG: no IEND chunk');
    writeFileSync(truncated, readFileSync(plain).subarray(0, 50));
    expect(() => readPngText(truncated)).toThrow('chunk runs past the end');
  });
});
