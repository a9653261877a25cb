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
  /** Per query: how many gallery images are nearer than the wanted emoji's nearest one (0: it is the nearest). */
  ranks: number[];
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

/**
 * The metric's reference: each name's real image in one style, itself left out of the gallery, so
 * only the other style's image of the same emoji can be a hit — how often a faithful drawing in the
 * other style would count. Names with a single style are left out.
 */
export function otherStyleReference(gallery: IdentityGallery, names: readonly IdentityName[], k = 5): IdentityResult {
  const queries: number[] = [];
  for (const { key } of names) {
    const first = gallery.keys.indexOf(key);
    if (first >= 0 && gallery.keys.indexOf(key, first + 1) >= 0) queries.push(first);
  }
  return identityAgreement(gallery, queries.map((n) => gallery.images[n]), queries.map((n) => gallery.keys[n]), k, queries);
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

/** Squared pixel distance from `image` to every gallery image (Infinity at `skip`). */
function distances(gallery: IdentityGallery, image: RgbImage, skip = -1): Float64Array {
  const { size } = gallery;
  if (image.width !== size || image.height !== size) {
    throw new Error(`identity: the gallery holds ${size}×${size} images, got a ${image.width}×${image.height} image`);
  }
  const q = image.data;
  return Float64Array.from(gallery.images, (real, index) => {
    if (index === skip) return Infinity;
    const g = real.data;
    let distance = 0;
    for (let i = 0; i < q.length; i++) distance += (q[i] - g[i]) ** 2;
    return distance;
  });
}

/**
 * Indices of the k gallery images nearest to `image` by squared pixel distance, nearest first
 * (leaving out gallery image `skip`, e.g. the query itself).
 */
export function nearestImages(gallery: IdentityGallery, image: RgbImage, k: number, skip = -1): number[] {
  return nearestOf(distances(gallery, image, skip), k);
}

function nearestOf(d: Float64Array, k: number): number[] {
  const best: number[] = [];
  d.forEach((distance, index) => {
    if (distance === Infinity) return;
    if (best.length < k || distance < d[best[best.length - 1]!]!) {
      best.push(index);
      best.sort((a, b) => d[a]! - d[b]!);
      if (best.length > k) best.pop();
    }
  });
  return best;
}

/**
 * The share of images whose wanted emoji is among their k nearest real images; `skip[i]`, when
 * given, is a gallery image query i may not match (for real queries: themselves).
 */
export function identityAgreement(gallery: IdentityGallery, images: readonly RgbImage[], wanted: readonly string[], k = 5, skip?: readonly number[]): IdentityResult {
  if (images.length !== wanted.length) throw new Error(`identity: ${images.length} images for ${wanted.length} wanted emoji`);
  if (!images.length) throw new Error('identity: no images');
  const known = new Set(gallery.keys);
  const missing = wanted.find((key) => !known.has(key));
  if (missing !== undefined) throw new Error(`identity: the gallery has no image of emoji ${missing}`);
  const nearest: number[][] = [];
  const ranks: number[] = [];
  images.forEach((image, i) => {
    const d = distances(gallery, image, skip?.[i]);
    nearest.push(nearestOf(d, k));
    let own = Infinity;
    gallery.keys.forEach((key, j) => {
      if (key === wanted[i]) own = Math.min(own, d[j]!);
    });
    ranks.push(own === Infinity ? Infinity : d.filter((x) => x < own).length);
  });
  const hits = nearest.filter((indices, i) => indices.some((n) => gallery.keys[n] === wanted[i])).length;
  return { hits, total: images.length, rate: hits / images.length, nearest, ranks };
}

/** Upper ends (1-based ranks) of the bands `rankBands` counts the own emoji's rank in. */
const RANK_BANDS = [5, 20, 50, 200] as const;

/**
 * How far off the misses are: how many queries have their own emoji's nearest image at ranks 1–5
 * (the hits), 6–20, 21–50, 51–200 and beyond — near misses, or wholly another picture.
 */
export function rankBands(ranks: readonly number[]): Record<string, number> {
  const bands: Record<string, number> = {};
  let low = 1;
  for (const high of RANK_BANDS) {
    bands[`${low}–${high}`] = ranks.filter((r) => r + 1 >= low && r + 1 <= high).length;
    low = high + 1;
  }
  bands[`beyond ${RANK_BANDS[RANK_BANDS.length - 1]}`] = ranks.filter((r) => r + 1 >= low).length;
  return bands;
}
