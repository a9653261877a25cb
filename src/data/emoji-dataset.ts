// The emoji set in the shape of ImageFolderDataset (folder.ts), so every training task that takes
// an image folder takes it too: `items` with decoded images, `resolution`, `length`, and
// `batch(indices, rng, flip)`. Images come through the tensor cache, so only the first load
// decodes PNGs. When `batch` gets a random source it draws one of each item's caption variants
// (`pickCaption`); loops that read `items[i].caption` get the name-based caption.
import type { RandomSource } from '../engine/index.ts';
import { type RgbImage, imageToTensor } from '../io/image.ts';
import { pickCaption } from './caption-variants.ts';
import { type EmojiCacheOptions, emojiPixels, pixelsToFloat } from './emoji-cache.ts';
import type { EmojiRecord } from './emoji.ts';
import { type DataItem, flipHorizontal } from './folder.ts';

export interface EmojiItem extends DataItem {
  /** Every caption of the image; `caption` is the first. */
  captions: readonly string[];
  record: EmojiRecord;
}

export class EmojiDataset {
  private constructor(
    readonly items: readonly EmojiItem[],
    readonly resolution: number,
  ) {}

  static async load(options: EmojiCacheOptions = {}): Promise<EmojiDataset> {
    const { pixels, size, records } = await emojiPixels(options);
    if (records.length === 0) throw new Error('emoji data set: the options select no images');
    const values = pixelsToFloat(pixels, '0..1'); // one buffer; each image is a view into it
    const imageSize = 3 * size * size;
    const items = records.map((record, n): EmojiItem => {
      const image: RgbImage = { width: size, height: size, channels: 3, data: values.subarray(n * imageSize, (n + 1) * imageSize) };
      return { name: record.id, caption: record.captions[0], captions: record.captions, image, record };
    });
    return new EmojiDataset(items, size);
  }

  get length(): number {
    return this.items.length;
  }

  /**
   * Pixels [B, 3, R, R] in [-1, 1] and one caption per item. With `rng`, each item's caption is
   * drawn from its variants; with `flip` too, each image is first mirrored with probability ½
   * (mind that some captions say "left", "right" or "facing right").
   */
  batch(indices: readonly number[], rng?: RandomSource, flip = false): { pixels: Float32Array; captions: string[]; shape: [number, number, number, number] } {
    if (flip && !rng) throw new Error('random flips need a random source');
    const images: RgbImage[] = [];
    const captions: string[] = [];
    for (const i of indices) {
      const item = this.items[i];
      if (!item) throw new Error(`no item ${i} in an emoji data set of ${this.items.length}`);
      images.push(flip && rng!.rand(1)[0] < 0.5 ? flipHorizontal(item.image) : item.image);
      captions.push(rng ? pickCaption(item, rng) : item.caption);
    }
    const r = this.resolution;
    return { pixels: imageToTensor(images, '-1..1'), captions, shape: [indices.length, 3, r, r] };
  }
}

/** The emoji set (see EmojiCacheOptions), decoded through the tensor cache. */
export function loadEmojiDataset(options: EmojiCacheOptions = {}): Promise<EmojiDataset> {
  return EmojiDataset.load(options);
}
