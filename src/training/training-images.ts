// The images a personalisation run trains on: a folder (name.png + name.txt captions, or a
// metadata.jsonl), the npm-installed emoji set (`emoji[:settings]`), or images already in memory
// (decoded, or the bytes of a PNG, JPEG or WebP file, as an upload arrives), each resized and
// centre-cropped to the training resolution.

import sharp from 'sharp';
import { loadEmojiDataset } from '../data/emoji-dataset.ts';
import { isEmojiSource, parseEmojiSource } from '../data/emoji-source.ts';
import { type DataItem, ImageFolderDataset } from '../data/folder.ts';
import { type RgbImage, readImage } from '../io/image.ts';
import { encodePng } from '../io/png.ts';

/** What the fine-tuning tasks read: decoded images at the training resolution, with captions. */
export interface TrainingData {
  readonly items: readonly DataItem[];
}

export interface TrainingImage {
  /** A decoded image, or the bytes of a PNG, JPEG or WebP file. */
  image: RgbImage | Uint8Array;
  /** Its caption (LoRA trains on captions; DreamBooth and Textual Inversion use their prompts). */
  caption?: string;
  /** Named in errors (default image-1, image-2, …). */
  name?: string;
}

/** A folder path, `emoji[:settings]`, or images in memory. */
export type TrainingImages = string | readonly TrainingImage[];

export interface ImageSourceOptions {
  /** Warn about images without a caption (caption-conditioned training). */
  requireCaptions: boolean;
  onWarning?: (message: string) => void;
}

/** A folder or `emoji[:settings]` as a data set with batches (what every trainer reads). */
export function loadImageSource(source: string, resolution: number, o: ImageSourceOptions): Promise<ImageFolderDataset> {
  if (isEmojiSource(source)) return loadEmojiDataset({ ...parseEmojiSource(source), size: resolution });
  return ImageFolderDataset.load(source, { resolution, requireCaptions: o.requireCaptions, onWarning: o.onWarning ?? (() => {}) });
}

const ENCODED_FORMATS = ['png', 'jpeg', 'webp'];

/** Reads the training images at `resolution`; `onWarning` hears about skipped or uncaptioned files. */
export async function loadTrainingImages(images: TrainingImages, resolution: number, o: ImageSourceOptions): Promise<TrainingData> {
  if (typeof images === 'string') return loadImageSource(images, resolution, o);
  if (!images.length) throw new Error('no training images given');
  const items = await Promise.all(images.map((entry, i) => decodeTrainingImage(entry, entry.name ?? `image-${i + 1}`, resolution)));
  const uncaptioned = items.filter((item) => !item.caption).map((item) => item.name);
  if (o.requireCaptions && uncaptioned.length) o.onWarning?.(`${uncaptioned.length} image(s) have no caption and train with "": ${uncaptioned.join(', ')}`);
  return { items };
}

/** Decoded, resized and centre-cropped as a file in a training folder is (through readImage). */
async function decodeTrainingImage(entry: TrainingImage, name: string, resolution: number): Promise<DataItem> {
  const { image } = entry;
  let bytes: Buffer;
  if (image instanceof Uint8Array) {
    const format = await sharp(image).metadata().then((m) => m.format, () => undefined);
    if (!format || !ENCODED_FORMATS.includes(format)) throw new Error(`training image ${name}: not a PNG, JPEG or WebP image${format ? ` (it is ${format})` : ''}`);
    bytes = Buffer.from(image);
  } else {
    bytes = await encodePng(image);
  }
  const decoded = await readImage(bytes, { width: resolution, height: resolution }).catch((error: Error) => {
    throw new Error(`training image ${name}: ${error.message}`);
  });
  return { name, caption: entry.caption ?? '', image: decoded };
}
