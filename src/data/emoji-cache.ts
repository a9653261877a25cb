// The emoji images decoded once, for training epochs that should not re-decode PNGs: a safetensors
// file per image size under .cache/data/ (git-ignored) holding every image decoded so far as uint8
// [N, 3, S, S] — lossless, since the sources are 8-bit, and a quarter of float32's size — with the
// record ids and package versions in its metadata. A request for records the file lacks decodes
// just those and rewrites the file with them added; new package versions start it afresh.
// Captions are not cached: they come from the records, which are cheap to rebuild.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile, writeSafetensors } from '../engine/safetensors.ts';
import { type TensorRange, toRgb8 } from '../io/image.ts';
import { type EmojiDatasetOptions, type EmojiRecord, NATIVE_EMOJI_SIZE, emojiPackageVersions, emojiRecords, readEmojiImage } from './emoji.ts';

const FORMAT = 'nuri-emoji-cache/1';
const DEFAULT_CACHE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '.cache', 'data');
/** Images decoded at once; sharp decodes on libuv's thread pool. */
const DECODE_CONCURRENCY = 8;

export interface EmojiCacheOptions extends EmojiDatasetOptions {
  /** Default `<repo>/.cache/data`. */
  cacheDir?: string;
  /** Called as images are decoded: (done, total). */
  onProgress?: (done: number, total: number) => void;
}

export interface EmojiTensors {
  /** [N, 3, size, size], values in [-1, 1], in `records` order. */
  images: Float32Array;
  shape: [number, number, number, number];
  /** Every caption variant of each image (`records[i].captions`). */
  captions: string[][];
  ids: string[];
  records: EmojiRecord[];
  /** Images that had to be decoded for this call (0 when the cache had them all). */
  decoded: number;
  cachePath: string;
}

export function emojiCachePath(size: number, cacheDir = DEFAULT_CACHE_DIR): string {
  return join(cacheDir, `emoji-${size}.safetensors`);
}

interface CacheContents { ids: string[]; pixels: Uint8Array }

function readCache(path: string, size: number, versions: string): CacheContents {
  if (!existsSync(path)) return { ids: [], pixels: new Uint8Array(0) };
  const file = SafetensorsFile.open(path);
  try {
    const { format, packages, ids } = file.metadata;
    if (format !== FORMAT || packages !== versions || !ids || !file.has('pixels')) return { ids: [], pixels: new Uint8Array(0) };
    const parsed = JSON.parse(ids) as string[];
    const { dtype, shape } = file.entry('pixels');
    const expected = [parsed.length, 3, size, size];
    if (dtype !== 'U8' || shape.join() !== expected.join()) {
      throw new Error(`${path}: pixels are ${dtype} [${shape.join(', ')}], expected U8 [${expected.join(', ')}]; delete the file to rebuild it`);
    }
    return { ids: parsed, pixels: file.read('pixels').data as Uint8Array };
  } finally {
    file.close();
  }
}

/** 8-bit planar [3, S, S] pixels of one record. */
async function decode(record: EmojiRecord, size: number): Promise<Uint8Array> {
  const image = await readEmojiImage(record, size);
  const interleaved = toRgb8(image); // HWC
  const plane = size * size;
  const planar = new Uint8Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) planar[c * plane + i] = interleaved[i * 3 + c];
  }
  return planar;
}

export interface EmojiPixels {
  /** [N, 3, size, size] 8-bit, planar, in `records` order. */
  pixels: Uint8Array;
  size: number;
  records: EmojiRecord[];
  /** Images that had to be decoded for this call (0 when the cache had them all). */
  decoded: number;
  cachePath: string;
}

/** The selected records' images as 8-bit pixels, decoding (and caching) only those the cache lacks. */
export async function emojiPixels(options: EmojiCacheOptions = {}): Promise<EmojiPixels> {
  const size = options.size ?? NATIVE_EMOJI_SIZE;
  if (!Number.isInteger(size) || size <= 0) throw new Error(`emoji image size must be a positive integer, got ${size}`);
  const records = emojiRecords(options);
  const cachePath = emojiCachePath(size, options.cacheDir);
  const versions = JSON.stringify(emojiPackageVersions());
  const cached = readCache(cachePath, size, versions);
  const imageBytes = 3 * size * size;

  const row = new Map(cached.ids.map((id, i) => [id, i]));
  const missing = records.filter((r) => !row.has(r.id));
  let all = cached.pixels;
  if (missing.length > 0) {
    all = new Uint8Array(cached.pixels.length + missing.length * imageBytes);
    all.set(cached.pixels);
    for (let start = 0; start < missing.length; start += DECODE_CONCURRENCY) {
      const chunk = missing.slice(start, start + DECODE_CONCURRENCY);
      const decoded = await Promise.all(chunk.map((r) => decode(r, size)));
      decoded.forEach((p, k) => all.set(p, cached.pixels.length + (start + k) * imageBytes));
      options.onProgress?.(start + chunk.length, missing.length);
    }
    const ids = [...cached.ids, ...missing.map((r) => r.id)];
    ids.forEach((id, i) => row.set(id, i));
    mkdirSync(dirname(cachePath), { recursive: true });
    writeSafetensors(cachePath, { pixels: { dtype: 'U8', shape: [ids.length, 3, size, size], data: all } }, {
      format: FORMAT,
      size: String(size),
      packages: versions,
      ids: JSON.stringify(ids),
    });
  }

  const pixels = new Uint8Array(records.length * imageBytes);
  records.forEach((record, n) => {
    const source = row.get(record.id)! * imageBytes;
    pixels.set(all.subarray(source, source + imageBytes), n * imageBytes);
  });
  return { pixels, size, records, decoded: missing.length, cachePath };
}

/** 8-bit values to floats exactly as readImage (v / 255) and imageToTensor (2x − 1) compute them. */
export function pixelsToFloat(pixels: Uint8Array, range: TensorRange): Float32Array {
  const table = Float32Array.from({ length: 256 }, (_, v) => (range === '-1..1' ? 2 * Math.fround(v / 255) - 1 : v / 255));
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = table[pixels[i]];
  return out;
}

/** The selected records' images as one float tensor in [-1, 1], with their captions and ids. */
export async function emojiTensorCache(options: EmojiCacheOptions = {}): Promise<EmojiTensors> {
  const { pixels, size, records, decoded, cachePath } = await emojiPixels(options);
  return {
    images: pixelsToFloat(pixels, '-1..1'),
    shape: [records.length, 3, size, size],
    captions: records.map((r) => r.captions),
    ids: records.map((r) => r.id),
    records,
    decoded,
    cachePath,
  };
}
