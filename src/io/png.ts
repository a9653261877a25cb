// PNG files with text metadata. sharp encodes the pixels; the text chunks are spliced in here,
// right after IHDR, so readers that stop early (web UIs looking for `parameters`) find them.
// Text that Latin-1 can hold goes in tEXt, anything else in uncompressed iTXt (UTF-8) — the
// same choice Pillow's PngInfo.add_text makes, which is what AUTOMATIC1111 writes with.
import { readFileSync } from 'node:fs';
import { crc32, inflateSync } from 'node:zlib';
import sharp from 'sharp';
import { writeFileAtomic } from './atomic-write.ts';
import { toRgb8, type RgbImage } from './image.ts';
import { decodePngText, pngTextChunks } from './png-text.ts';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface PngTextOptions {
  /** Generation parameters in AUTOMATIC1111's format (see formatParameters), stored as `parameters`. */
  parameters?: string;
  /** Further text chunks, keyword → text. */
  text?: Record<string, string>;
}

/** Encodes an image as an 8-bit RGB PNG with the given text chunks. */
export async function encodePng(image: RgbImage, options: PngTextOptions = {}): Promise<Buffer> {
  const png = await sharp(toRgb8(image), { raw: { width: image.width, height: image.height, channels: 3 } })
    .png()
    .toBuffer();
  const text: Record<string, string> = { ...options.text };
  if (options.parameters !== undefined) text.parameters = options.parameters;
  return insertTextChunks(png, text);
}

/**
 * Writes an image as PNG. The bytes go to a temporary file in the same folder that is then
 * renamed over `path`, so a failure never leaves a half-written PNG behind.
 */
export async function writePng(path: string, image: RgbImage, options: PngTextOptions = {}): Promise<void> {
  const bytes = await encodePng(image, options);
  await writeFileAtomic(path, bytes).catch((error: Error) => {
    throw new Error(`writePng: ${error.message}`);
  });
}

/** Returns a copy of `png` with one text chunk per entry inserted after IHDR. */
export function insertTextChunks(png: Buffer, text: Record<string, string>): Buffer {
  if (!png.subarray(0, 8).equals(SIGNATURE) || png.toString('latin1', 12, 16) !== 'IHDR') {
    throw new Error('insertTextChunks: not a PNG (no signature and IHDR)');
  }
  const afterIhdr = 8 + 12 + png.readUInt32BE(8);
  const chunks = Object.entries(text).map(([keyword, value]) => textChunk(keyword, value));
  return Buffer.concat([png.subarray(0, afterIhdr), ...chunks, png.subarray(afterIhdr)]);
}

function textChunk(keyword: string, value: string): Buffer {
  // PNG spec: keywords are 1-79 printable Latin-1 characters.
  if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(keyword)) throw new Error(`PNG text keyword ${JSON.stringify(keyword)} is not allowed`);
  if (value.includes('\0')) throw new Error(`PNG text ${JSON.stringify(keyword)} contains a NUL character`);
  const key = Buffer.from(keyword, 'latin1');
  if (/^[\x00-\xff]*$/.test(value)) {
    return chunk('tEXt', Buffer.concat([key, Buffer.from([0]), Buffer.from(value, 'latin1')]));
  }
  // iTXt: keyword NUL, compression flag 0, method 0, empty language tag NUL, empty translated keyword NUL, UTF-8 text.
  return chunk('iTXt', Buffer.concat([key, Buffer.from([0, 0, 0, 0, 0]), Buffer.from(value, 'utf8')]));
}

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** The text chunks (tEXt, zTXt, iTXt) of PNG bytes, keyword → text. */
export function parsePngText(png: Uint8Array): Record<string, string> {
  const text: Record<string, string> = {};
  for (const chunk of pngTextChunks(png)) text[chunk.keyword] = decodePngText(chunk, chunk.compressed ? inflateSync(chunk.body) : chunk.body);
  return text;
}

/** Reads the text chunks of a PNG file, keyword → text. */
export function readPngText(path: string): Record<string, string> {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    throw new Error(`readPngText: cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : message}`);
  }
  try {
    return parsePngText(bytes);
  } catch (error) {
    throw new Error(`readPngText: ${path}: ${(error as Error).message}`);
  }
}
