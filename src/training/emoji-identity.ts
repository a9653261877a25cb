// Whether a generated picture is the emoji its name asks for, checked the way a person would: look
// up the k nearest real emoji images by pixels (squared distance over every RGB value, images on
// white at the same size) among every base image of both styles, and count a hit when the prompt's
// own emoji (either style) is among them. A model that draws "red apple" as a red blob lands next
// to red circles and hearts, not next to the apple; one that draws the apple lands next to it.
import { EmojiDataset } from '../data/emoji-dataset.ts';
import type { EmojiCacheOptions } from '../data/emoji-cache.ts';
import { type Split, emojiRecords } from '../data/emoji.ts';
import type { RgbImage } from '../io/image.ts';

/** Real images to search, each labelled with the emoji it shows (its base code points). */
export interface IdentityGallery {
  size: number;
  images: readonly RgbImage[];
  /** One per image: which emoji it is (both styles of an emoji share it). */
  keys: readonly string[];
}

export interface IdentityResult {
  hits: number;
  total: number;
  /** hits / total. */
  rate: number;
  /** Per query: the gallery indices of its k nearest images, nearest first. */
  nearest: number[][];
}

type GalleryOptions = Pick<EmojiCacheOptions, 'filter' | 'cacheDir'>;

/**
 * Every base emoji image (no skin-tone variants) of both styles and both splits, on white at
 * `size` (only those `filter` keeps, when given).
 */
export async function emojiGallery(size: number, options: GalleryOptions = {}): Promise<IdentityGallery> {
  const images: RgbImage[] = [];
  const keys: string[] = [];
  for (const split of ['train', 'heldout'] as const) {
    const selection = { ...options, size, includeSkinTones: false, split };
    if (!emojiRecords(selection).length) continue; // a filter may leave a split empty
    const data = await EmojiDataset.load(selection);
    for (const item of data.items) {
      images.push(item.image);
      keys.push(item.record.unified);
    }
  }
  if (!images.length) throw new Error('identity: the gallery has no images');
  return { size, images, keys };
}

export interface IdentityName {
  /** The prompt: the emoji's Unicode name, as the recipe trains it ("red apple"). */
  name: string;
  /** The emoji (gallery key) the name should draw. */
  key: string;
}

/** Up to `count` distinct emoji names of a split, evenly spaced over it (all of them when fewer). */
export async function identityNames(size: number, split: Split, count: number, options: GalleryOptions = {}): Promise<IdentityName[]> {
  const data = await EmojiDataset.load({ ...options, size, includeSkinTones: false, split });
  const byKey = new Map<string, string>();
  for (const item of data.items) if (!byKey.has(item.record.unified)) byKey.set(item.record.unified, item.record.name);
  const all = [...byKey].map(([key, name]) => ({ key, name }));
  const k = Math.min(count, all.length);
  return Array.from({ length: k }, (_, i) => all[Math.floor((i * all.length) / k)]);
}

/** Indices of the k gallery images nearest to `image` by squared pixel distance, nearest first. */
export function nearestImages(gallery: IdentityGallery, image: RgbImage, k: number): number[] {
  const { size } = gallery;
  if (image.width !== size || image.height !== size) {
    throw new Error(`identity: the gallery holds ${size}×${size} images, got a ${image.width}×${image.height} image`);
  }
  const q = image.data;
  const best: { index: number; distance: number }[] = [];
  gallery.images.forEach((real, index) => {
    const g = real.data;
    let distance = 0;
    for (let i = 0; i < q.length; i++) distance += (q[i] - g[i]) ** 2;
    if (best.length < k || distance < best[best.length - 1].distance) {
      best.push({ index, distance });
      best.sort((a, b) => a.distance - b.distance);
      if (best.length > k) best.pop();
    }
  });
  return best.map((b) => b.index);
}

/** The share of images whose wanted emoji is among their k nearest real images. */
export function identityAgreement(gallery: IdentityGallery, images: readonly RgbImage[], wanted: readonly string[], k = 5): IdentityResult {
  if (images.length !== wanted.length) throw new Error(`identity: ${images.length} images for ${wanted.length} wanted emoji`);
  if (!images.length) throw new Error('identity: no images');
  const known = new Set(gallery.keys);
  const missing = wanted.find((key) => !known.has(key));
  if (missing !== undefined) throw new Error(`identity: the gallery has no image of emoji ${missing}`);
  const nearest = images.map((image) => nearestImages(gallery, image, k));
  const hits = nearest.filter((indices, i) => indices.some((n) => gallery.keys[n] === wanted[i])).length;
  return { hits, total: images.length, rate: hits / images.length, nearest };
}
