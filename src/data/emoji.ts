// The emoji image–caption set that Nuri's default model is trained on: the 64×64 PNGs of the npm
// packages emoji-datasource-twitter (Twemoji, CC-BY 4.0) and emoji-datasource-google (Noto Emoji,
// Apache-2.0), captioned from their `emoji.json` (docs/DATA.md has the attribution).
//
// One record per (emoji, style, skin variation) whose image the package ships. Captions are every
// way the emoji is named — its Unicode name and its short names, lower-cased ("red apple",
// "apple"), skin variants suffixed ("thumbs up sign, medium skin tone"), and the style word
// appended or not ("red apple, twemoji") — and the training loop picks one each time it draws
// the image (`pickCaption` in caption-variants.ts). 5% of base names are held out: their records,
// and every caption equal to one of their captions, are never trained on.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { type RgbImage, readImage } from '../io/image.ts';
import { isHeldOut } from './split.ts';

export type EmojiStyle = 'twemoji' | 'noto';
export const EMOJI_STYLES: readonly EmojiStyle[] = ['twemoji', 'noto'];

/** Where the style word goes: in every caption, in none, or in half the variants (the default). */
export type StyleWord = 'optional' | 'always' | 'never';
export type Split = 'train' | 'heldout';

/** Side of the PNGs the packages ship. */
export const NATIVE_EMOJI_SIZE = 64;

interface StylePackage {
  packageName: string;
  imageDir: string;
  flag: 'has_img_twitter' | 'has_img_google';
}

const PACKAGES: Record<EmojiStyle, StylePackage> = {
  twemoji: { packageName: 'emoji-datasource-twitter', imageDir: 'img/twitter/64', flag: 'has_img_twitter' },
  noto: { packageName: 'emoji-datasource-google', imageDir: 'img/google/64', flag: 'has_img_google' },
};

/** CLDR names of the Fitzpatrick modifiers, by code point. */
const SKIN_TONES: Record<string, string> = {
  '1F3FB': 'light skin tone',
  '1F3FC': 'medium-light skin tone',
  '1F3FD': 'medium skin tone',
  '1F3FE': 'medium-dark skin tone',
  '1F3FF': 'dark skin tone',
};

/**
 * Emoji whose names use colour words the images do not show, by code points (without U+FE0F).
 * Mostly legacy Unicode names, where BLACK means filled and WHITE outlined: U+2764 HEAVY BLACK
 * HEART is red, U+2B50 WHITE MEDIUM STAR yellow, the BLACK arrows are blue or orange buttons. Found
 * by comparing each colour-word caption with `dominantColour` of both styles' images
 * (bench/emoji-data.ts); the colour words are removed from their captions ("heavy heart", "star"),
 * so that "black" and "white" keep their meaning for the model.
 */
const MISLEADING_COLOUR_NAMES = new Set([
  '1F0CF', '1F446', '1F447', '1F448', '1F449', '1F4AE', '1F53C', '1F53D', '23E9', '23EA', '23EB', '23EC',
  '23ED', '23EE', '23EF', '23F9', '23FA', '25B6', '25C0', '2600', '260E', '261D', '2639', '263A', '2665',
  '2666', '267B', '2702', '2705', '2712', '2734', '2753', '2764', '27A1', '2B05', '2B06', '2B07', '2B50',
]);
const COLOUR_WORD = /\b(?:black|white|red|orange|yellow|green|blue|purple|brown|pink|grey|gray)\b/g;

export interface EmojiDatasetOptions {
  /** Default both. */
  styles?: readonly EmojiStyle[];
  /** Side in pixels; images are resized (Lanczos, by sharp) when it is not 64. Default 64. */
  size?: number;
  /** Add one record per skin-tone variant. Default true. */
  includeSkinTones?: boolean;
  /** Default 'optional'. */
  styleWord?: StyleWord;
  /** Default 'train'. */
  split?: Split;
  /** Keeps only the records it returns true for (e.g. a small subset for tests). */
  filter?: (record: EmojiRecord) => boolean;
}

export interface EmojiRecord {
  /** `<style>/<unified code points, lower-case>`, e.g. "twemoji/1f44d-1f3fd". */
  id: string;
  style: EmojiStyle;
  /** Code points, e.g. "1F44D-1F3FD". */
  unified: string;
  /** The base emoji's Unicode name, lower-cased: "thumbs up sign". The held-out split is by it. */
  name: string;
  /** "medium skin tone", or for two people "light skin tone, dark skin tone". */
  skinTone?: string;
  /** Every caption of the image, the name-based one first. */
  captions: string[];
  category: string;
  subcategory: string;
  split: Split;
  /** The 64×64 PNG. */
  path: string;
}

interface RawVariation {
  unified: string;
  image: string;
  has_img_twitter?: boolean;
  has_img_google?: boolean;
}

interface RawEmoji extends RawVariation {
  name: string | null;
  short_names: string[];
  category: string;
  subcategory: string;
  skin_variations?: Record<string, RawVariation>;
}

const resolveModule = createRequire(import.meta.url).resolve;

/** The package's folder, found the way Node finds any dependency. */
export function emojiPackageDir(style: EmojiStyle): string {
  const { packageName } = PACKAGES[style];
  try {
    return dirname(resolveModule(`${packageName}/package.json`));
  } catch {
    throw new Error(`the ${style} emoji images need the npm package ${packageName}: run npm install`);
  }
}

/** Package versions, to key caches by. */
export function emojiPackageVersions(styles: readonly EmojiStyle[] = EMOJI_STYLES): Record<string, string> {
  const versions: Record<string, string> = {};
  for (const style of styles) {
    const manifest = JSON.parse(readFileSync(join(emojiPackageDir(style), 'package.json'), 'utf8')) as { version: string };
    versions[PACKAGES[style].packageName] = manifest.version;
  }
  return versions;
}

const catalogues = new Map<string, RawEmoji[]>();

function readCatalogue(style: EmojiStyle): RawEmoji[] {
  const path = join(emojiPackageDir(style), 'emoji.json');
  let catalogue = catalogues.get(path);
  if (!catalogue) {
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (!Array.isArray(parsed)) throw new Error(`${path}: expected a JSON array of emoji`);
    for (const [i, e] of (parsed as RawEmoji[]).entries()) {
      if (typeof e?.unified !== 'string' || typeof e.image !== 'string' || !Array.isArray(e.short_names)) {
        throw new Error(`${path}: entry ${i} lacks unified, image or short_names`);
      }
    }
    catalogue = parsed as RawEmoji[];
    catalogues.set(path, catalogue);
  }
  return catalogue;
}

/** Unicode name, lower-cased; falls back to the first short name for the rare unnamed entry. */
function baseName(e: RawEmoji): string {
  return normalise(e, e.name ?? e.short_names[0] ?? e.unified);
}

/** The emoji's own caption texts: its name, then its short names with underscores as spaces. */
function baseTexts(e: RawEmoji): string[] {
  return unique([baseName(e), ...e.short_names.map((s) => normalise(e, s.replaceAll('_', ' ')))]);
}

function normalise(e: RawEmoji, text: string): string {
  let lower = text.toLowerCase();
  if (MISLEADING_COLOUR_NAMES.has(e.unified.toUpperCase().replace(/-FE0F/g, ''))) lower = lower.replace(COLOUR_WORD, '');
  return lower.replace(/\s+/g, ' ').trim();
}

function unique(texts: string[]): string[] {
  return [...new Set(texts.filter((t) => t.length > 0))];
}

function skinToneName(key: string): string {
  const tones = unique(key.split('-').map((code) => SKIN_TONES[code.toUpperCase()] ?? ''));
  if (tones.length === 0) throw new Error(`unknown skin tone modifier ${key}`);
  return tones.join(', ');
}

/**
 * Base caption texts per emoji, made disjoint across the split: every emoji keeps its own name;
 * a held-out emoji drops short names that are some training emoji's name, and a training emoji
 * drops short names that are any held-out caption. E.g. were DOG FACE (short name "dog") held out
 * and DOG trained, "dog" would stay DOG's caption and DOG FACE would lose it.
 */
function splitTexts(catalogue: readonly RawEmoji[]): Map<RawEmoji, { split: Split; texts: string[] }> {
  const splitOf = (e: RawEmoji): Split => (isHeldOut(baseName(e)) ? 'heldout' : 'train');
  const trainNames = new Set(catalogue.filter((e) => splitOf(e) === 'train').map(baseName));
  const heldOutTexts = new Set<string>();
  const result = new Map<RawEmoji, { split: Split; texts: string[] }>();
  for (const e of catalogue) {
    if (splitOf(e) !== 'heldout') continue;
    const texts = baseTexts(e).filter((t, i) => i === 0 || !trainNames.has(t));
    texts.forEach((t) => heldOutTexts.add(t));
    result.set(e, { split: 'heldout', texts });
  }
  for (const e of catalogue) {
    if (splitOf(e) !== 'train') continue;
    result.set(e, { split: 'train', texts: baseTexts(e).filter((t, i) => i === 0 || !heldOutTexts.has(t)) });
  }
  return result;
}

function withStyleWord(texts: readonly string[], style: EmojiStyle, styleWord: StyleWord): string[] {
  const styled = texts.map((t) => `${t}, ${style}`);
  if (styleWord === 'never') return [...texts];
  if (styleWord === 'always') return styled;
  return texts.flatMap((t, i) => [t, styled[i]]);
}

/** The records the options select, in package order (style, then sort order of emoji.json). */
export function emojiRecords(options: EmojiDatasetOptions = {}): EmojiRecord[] {
  const { styles = EMOJI_STYLES, includeSkinTones = true, styleWord = 'optional', split = 'train', filter } = options;
  if (styles.length === 0) throw new Error('emoji data set: no styles chosen');
  const records: EmojiRecord[] = [];
  for (const style of styles) {
    if (!Object.hasOwn(PACKAGES, style)) {
      throw new Error(`unknown emoji style ${JSON.stringify(style)}; expected one of ${EMOJI_STYLES.join(', ')}`);
    }
    const { imageDir, flag } = PACKAGES[style];
    const dir = join(emojiPackageDir(style), imageDir);
    const catalogue = readCatalogue(style);
    const texts = splitTexts(catalogue);
    for (const e of catalogue) {
      const { split: emojiSplit, texts: base } = texts.get(e)!;
      if (emojiSplit !== split) continue;
      const variants: [RawVariation, string | undefined][] = [[e, undefined]];
      if (includeSkinTones) {
        for (const [key, variation] of Object.entries(e.skin_variations ?? {})) variants.push([variation, skinToneName(key)]);
      }
      for (const [variant, skinTone] of variants) {
        const path = join(dir, variant.image);
        if (!variant[flag] || !existsSync(path)) continue;
        const texts = skinTone ? base.map((t) => `${t}, ${skinTone}`) : base;
        const record: EmojiRecord = {
          id: `${style}/${variant.unified.toLowerCase()}`,
          style,
          unified: variant.unified,
          name: base[0],
          captions: withStyleWord(texts, style, styleWord),
          category: e.category,
          subcategory: e.subcategory,
          split: emojiSplit,
          path,
          ...(skinTone ? { skinTone } : {}),
        };
        if (!filter || filter(record)) records.push(record);
      }
    }
  }
  return records;
}

/** Decodes one record's PNG on white at `size`×`size`. */
export async function readEmojiImage(record: EmojiRecord, size = NATIVE_EMOJI_SIZE): Promise<RgbImage> {
  const image = await readImage(record.path, size === NATIVE_EMOJI_SIZE ? {} : { width: size, height: size });
  if (image.width !== size || image.height !== size) {
    throw new Error(`${record.path}: decoded to ${image.width}x${image.height}, expected ${size}x${size}`);
  }
  return image;
}
