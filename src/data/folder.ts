// An image–caption data set from a folder, in either of the two layouts training scripts accept:
//
//   name.png + name.txt                  (the caption beside each image; .jpg/.jpeg/.webp too)
//   metadata.jsonl                       one {"file_name": "a.png", "text": "a caption"} per line
//                                        (Hugging Face's imagefolder convention; it wins when present)
//
// Images are decoded once at the training size (scaled to cover, centre-cropped). Files that will
// not decode are skipped and reported by name in one warning, never silently.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { RandomSource } from '../engine/index.ts';
import { type RgbImage, imageToTensor, readImage } from '../io/image.ts';

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp'];

export interface FolderEntry {
  /** Path of the image file. */
  file: string;
  caption: string;
}

export interface FolderListing {
  entries: FolderEntry[];
  /** Images without a caption (they get ""). */
  uncaptioned: string[];
}

/** The images of a folder and their captions, without decoding anything. */
export function listImageFolder(dir: string): FolderListing {
  if (!existsSync(dir)) throw new Error(`image folder not found: ${dir}`);
  const metadata = join(dir, 'metadata.jsonl');
  if (existsSync(metadata)) return { entries: readMetadata(dir, metadata), uncaptioned: [] };
  const names = readdirSync(dir).filter((n) => IMAGE_EXTENSIONS.includes(extname(n).toLowerCase())).sort();
  const uncaptioned: string[] = [];
  const entries = names.map((name) => {
    const captionFile = join(dir, `${basename(name, extname(name))}.txt`);
    if (!existsSync(captionFile)) uncaptioned.push(name);
    return { file: join(dir, name), caption: existsSync(captionFile) ? readFileSync(captionFile, 'utf8').trim() : '' };
  });
  return { entries, uncaptioned };
}

function readMetadata(dir: string, path: string): FolderEntry[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .map((line, i) => ({ line: line.trim(), number: i + 1 }))
    .filter(({ line }) => line !== '')
    .map(({ line, number }) => {
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch {
        throw new Error(`${path}:${number}: not a JSON object`);
      }
      const { file_name: fileName, text } = (row ?? {}) as Record<string, unknown>;
      if (typeof fileName !== 'string' || typeof text !== 'string') throw new Error(`${path}:${number}: needs "file_name" and "text" strings`);
      // A caption file may name images in subfolders, never outside the training folder.
      const inside = relative(resolve(dir), resolve(dir, fileName));
      if (inside === '' || inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside)) {
        throw new Error(`${path}:${number}: "file_name" ${JSON.stringify(fileName)} points outside ${dir}`);
      }
      return { file: join(dir, fileName), caption: text.trim() };
    });
}

export interface ImageFolderOptions {
  /** Square training size in pixels. */
  resolution: number;
  /** Called once with a message listing every skipped or uncaptioned file. */
  onWarning?: (message: string) => void;
  /** Warn about images without a caption (caption-conditioned training). */
  requireCaptions?: boolean;
}

export interface DataItem {
  name: string;
  caption: string;
  image: RgbImage;
}

export class ImageFolderDataset {
  private constructor(
    readonly items: readonly DataItem[],
    readonly resolution: number,
  ) {}

  static async load(dir: string, options: ImageFolderOptions): Promise<ImageFolderDataset> {
    const { resolution } = options;
    if (!Number.isInteger(resolution) || resolution <= 0) throw new Error(`resolution must be a positive integer, got ${resolution}`);
    const listing = listImageFolder(dir);
    const decoded = await mapLimited(listing.entries, 4, async (entry) => {
      try {
        return { name: basename(entry.file), caption: entry.caption, image: await readImage(entry.file, { width: resolution, height: resolution }) };
      } catch {
        return basename(entry.file);
      }
    });
    const bad = decoded.filter((d): d is string => typeof d === 'string');
    const items = decoded.filter((d): d is DataItem => typeof d !== 'string');
    const warn = options.onWarning ?? ((m: string) => console.warn(`warning: ${m}`));
    if (bad.length) warn(`skipped ${bad.length} unreadable image(s) in ${dir}: ${bad.join(', ')}`);
    if (options.requireCaptions && listing.uncaptioned.length) {
      warn(`${listing.uncaptioned.length} image(s) in ${dir} have no caption and train with "": ${listing.uncaptioned.join(', ')}`);
    }
    if (!items.length) throw new Error(`no readable images in ${dir}`);
    return new ImageFolderDataset(items, resolution);
  }

  get length(): number {
    return this.items.length;
  }

  /**
   * Pixels [B, 3, R, R] in [-1, 1] and captions for the given items. With `flip`, each image is
   * mirrored left–right with probability ½, drawn from `rng`.
   */
  batch(indices: readonly number[], rng?: RandomSource, flip = false): { pixels: Float32Array; captions: string[]; shape: [number, number, number, number] } {
    const images = indices.map((i) => {
      const item = this.items[i];
      if (!item) throw new Error(`no item ${i} in a data set of ${this.items.length}`);
      if (!flip) return item.image;
      if (!rng) throw new Error('random flips need a random source');
      return rng.rand(1)[0] < 0.5 ? flipHorizontal(item.image) : item.image;
    });
    const r = this.resolution;
    return { pixels: imageToTensor(images, '-1..1'), captions: indices.map((i) => this.items[i].caption), shape: [indices.length, 3, r, r] };
  }
}

export function flipHorizontal(image: RgbImage): RgbImage {
  const { width, height } = image;
  const data = new Float32Array(image.data.length);
  for (let row = 0; row < 3 * height; row++) {
    const o = row * width;
    for (let x = 0; x < width; x++) data[o + x] = image.data[o + width - 1 - x];
  }
  return { ...image, data };
}

async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
