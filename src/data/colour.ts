// The colour an image shows, in the words a prompt would use: used to check that "red heart" comes
// out red. Works in HSV on the image's foreground: near-white pixels are the background (emoji are
// composited on white) and are ignored; near-grey and near-black pixels carry no hue. The hue is
// the peak of a smoothed, circular hue histogram of the remaining (chromatic) pixels.
import type { RgbImage } from '../io/image.ts';

export type HueName = 'red' | 'orange' | 'yellow' | 'green' | 'cyan' | 'blue' | 'purple' | 'pink';
export type ColourName = HueName | 'brown' | 'black' | 'white' | 'grey';

/** Basic colour terms a caption or prompt may use, in the order prompts tend to name them. */
export const COLOUR_WORDS: readonly ColourName[] = [
  'red', 'orange', 'yellow', 'green', 'cyan', 'blue', 'purple', 'pink', 'brown', 'black', 'white', 'grey',
];

/** Upper hue bounds in degrees (exclusive), in order; red wraps around 360. */
const HUE_BOUNDS: readonly [number, HueName][] = [
  [13, 'red'], [40, 'orange'], [70, 'yellow'], [165, 'green'], [190, 'cyan'],
  [255, 'blue'], [310, 'purple'], [340, 'pink'], [360, 'red'],
];

export interface ColourThresholds {
  /** A pixel with value and saturation above / below these is background white. */
  backgroundValue: number;
  backgroundSaturation: number;
  /** Chroma (max − min) below this, or value below `blackValue`, means no hue. */
  greyChroma: number;
  blackValue: number;
}

const DEFAULTS: ColourThresholds = { backgroundValue: 0.9, backgroundSaturation: 0.1, greyChroma: 0.15, blackValue: 0.2 };

export interface HueEstimate {
  /** Degrees in [0, 360). */
  hue: number;
  /** Fraction of foreground pixels that are chromatic. */
  chromaticShare: number;
  /** Fraction of chromatic pixels within ±1 histogram bin of the peak. */
  peakShare: number;
  /** Mean value (HSV V) and saturation of the pixels near the peak: tell orange from brown. */
  peakValue: number;
  peakSaturation: number;
}

type PixelClass = 'background' | 'achromatic' | 'chromatic';

interface Hsv { hue: number; saturation: number; value: number; chroma: number }

function hsv(r: number, g: number, b: number): Hsv {
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  const chroma = max - min;
  let hue = 0;
  if (chroma > 0) {
    if (max === r) hue = ((g - b) / chroma) % 6;
    else if (max === g) hue = (b - r) / chroma + 2;
    else hue = (r - g) / chroma + 4;
    hue = (hue * 60 + 360) % 360;
  }
  return { hue, saturation: max === 0 ? 0 : chroma / max, value: max, chroma };
}

function classify(p: Hsv, t: ColourThresholds): PixelClass {
  if (p.value >= t.backgroundValue && p.saturation <= t.backgroundSaturation) return 'background';
  if (p.chroma < t.greyChroma || p.value < t.blackValue) return 'achromatic';
  return 'chromatic';
}

/** Visits every pixel of a planar [3, H, W] image as HSV. */
function forEachPixel(image: RgbImage, visit: (p: Hsv) => void): void {
  const plane = image.width * image.height;
  const { data } = image;
  for (let i = 0; i < plane; i++) visit(hsv(data[i], data[plane + i], data[2 * plane + i]));
}

const BINS = 36; // 10° each

/**
 * The dominant hue of the image's chromatic foreground, or null when fewer than `minShare` of the
 * foreground pixels are chromatic (a black, white or grey image has no dominant hue).
 */
export function dominantHue(image: RgbImage, minShare = 0.2, thresholds: Partial<ColourThresholds> = {}): HueEstimate | null {
  const t = { ...DEFAULTS, ...thresholds };
  const histogram = new Float64Array(BINS);
  const chromatic: Hsv[] = [];
  let foreground = 0;
  forEachPixel(image, (p) => {
    const kind = classify(p, t);
    if (kind === 'background') return;
    foreground++;
    if (kind !== 'chromatic') return;
    chromatic.push(p);
    histogram[Math.floor(p.hue / (360 / BINS)) % BINS]++;
  });
  if (foreground === 0 || chromatic.length < minShare * foreground) return null;

  // Peak of the histogram smoothed over three bins, so a hue on a bin edge is not split in two.
  let peak = 0;
  let best = -1;
  for (let b = 0; b < BINS; b++) {
    const mass = histogram[(b + BINS - 1) % BINS] + histogram[b] + histogram[(b + 1) % BINS];
    if (mass > best) [best, peak] = [mass, b];
  }
  // Circular mean of the hues in the peak's three bins: a hue finer than the bins.
  let x = 0, y = 0, value = 0, saturation = 0, count = 0;
  for (const p of chromatic) {
    const bin = Math.floor(p.hue / (360 / BINS)) % BINS;
    if (Math.min((bin - peak + BINS) % BINS, (peak - bin + BINS) % BINS) > 1) continue;
    x += Math.cos((p.hue * Math.PI) / 180);
    y += Math.sin((p.hue * Math.PI) / 180);
    value += p.value;
    saturation += p.saturation;
    count++;
  }
  const hue = ((Math.atan2(y, x) * 180) / Math.PI + 360) % 360;
  return {
    hue,
    chromaticShare: chromatic.length / foreground,
    peakShare: count / chromatic.length,
    peakValue: value / count,
    peakSaturation: saturation / count,
  };
}

/** 1 where a pixel is not background white (the emoji's object), else 0: [height · width]. */
export function foregroundMask(image: RgbImage, thresholds: Partial<ColourThresholds> = {}): Uint8Array {
  const t = { ...DEFAULTS, ...thresholds };
  const mask = new Uint8Array(image.width * image.height);
  let i = 0;
  forEachPixel(image, (p) => (mask[i++] = classify(p, t) === 'background' ? 0 : 1));
  return mask;
}

/** A 0/1 mask averaged over the cells of a coarser grid (the attention map's). */
export function areaAverage(mask: Uint8Array, width: number, height: number, cols: number, rows: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const counts = new Float32Array(rows * cols);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const cell = Math.floor((y * rows) / height) * cols + Math.floor((x * cols) / width);
      out[cell] += mask[y * width + x];
      counts[cell]++;
    }
  }
  return out.map((v, i) => v / counts[i]);
}

export interface HueStats {
  /** Share of the foreground (object) pixels that are chromatic and of the hue. */
  objectShare: number;
  /** Share of all the picture's pixels that are (an object growing in that hue counts). */
  pictureShare: number;
  /** Mean HSV saturation of those pixels (0 when there are none). */
  saturation: number;
}

/** How much of a picture shows the named hue, and how strongly. */
export function hueStats(image: RgbImage, hue: HueName, thresholds: Partial<ColourThresholds> = {}): HueStats {
  const t = { ...DEFAULTS, ...thresholds };
  let foreground = 0;
  let matching = 0;
  let saturation = 0;
  forEachPixel(image, (p) => {
    const kind = classify(p, t);
    if (kind === 'background') return;
    foreground++;
    if (kind !== 'chromatic' || hueName(p.hue) !== hue) return;
    matching++;
    saturation += p.saturation;
  });
  return { objectShare: foreground ? matching / foreground : 0, pictureShare: matching / (image.width * image.height), saturation: matching ? saturation / matching : 0 };
}

/** The basic colour term for a hue in degrees. */
export function hueName(hue: number): HueName {
  const h = ((hue % 360) + 360) % 360;
  for (const [bound, name] of HUE_BOUNDS) if (h < bound) return name;
  return 'red';
}

/**
 * The one colour word that best names the image. With a dominant hue: its name, except that a
 * warm hue (13°–50°) that is dull or dark is brown, and a pale red is pink. Without one: black
 * when the foreground is dark, white when it is light or almost absent (a white emoji on white
 * shows only its outline), grey between.
 */
export function dominantColour(image: RgbImage, thresholds: Partial<ColourThresholds> = {}): ColourName {
  const t = { ...DEFAULTS, ...thresholds };
  const estimate = dominantHue(image, 0.2, t);
  if (estimate) {
    const { hue, peakValue, peakSaturation } = estimate;
    const name = hueName(hue);
    if (hue >= 13 && hue < 50 && (peakValue < 0.6 || (peakValue < 0.85 && peakSaturation < 0.7))) return 'brown';
    if (name === 'red' && peakSaturation < 0.5 && peakValue > 0.85) return 'pink';
    return name;
  }
  let foreground = 0;
  let lightness = 0;
  let dark = 0;
  forEachPixel(image, (p) => {
    if (classify(p, t) === 'background') return;
    foreground++;
    lightness += p.value;
    if (p.value < 0.35) dark++;
  });
  if (foreground === 0) return 'white';
  const mean = lightness / foreground;
  if (mean < 0.47 || dark >= 0.5 * foreground) return 'black';
  return mean > 0.8 || foreground < 0.15 * image.width * image.height ? 'white' : 'grey';
}

/**
 * The default model's colour check (issue: "the dominant hue matches in at least seven of eight"):
 * training captions that name a colour, with the hue their images show.
 */
export const COLOUR_PROMPTS: readonly (readonly [prompt: string, hue: HueName])[] = [
  ['large red circle', 'red'],
  ['orange heart', 'orange'],
  ['yellow heart', 'yellow'],
  ['green apple', 'green'],
  ['green heart', 'green'],
  ['blue heart', 'blue'],
  ['large blue circle', 'blue'],
  ['purple heart', 'purple'],
];

/** The hue each image shows ('none' without a dominant one), beside the wanted hue of its prompt. */
export function colourAgreement(images: readonly RgbImage[], prompts: readonly (readonly [string, HueName])[] = COLOUR_PROMPTS): { prompt: string; want: HueName; seen: HueName | 'none' }[] {
  if (images.length !== prompts.length) throw new Error(`colour check: ${images.length} images for ${prompts.length} prompts`);
  return prompts.map(([prompt, want], i) => {
    const hue = dominantHue(images[i]);
    return { prompt, want, seen: hue ? hueName(hue.hue) : 'none' };
  });
}
