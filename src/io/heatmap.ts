// Heat maps of 2-D values (cross-attention maps per token, error maps): normalise to [0, 1],
// upscale bilinearly, colour with a perceptual colour map, optionally lay over the image.
import { createImage, type Rgb, type RgbImage } from './image.ts';

export type ColorMap = 'viridis' | 'inferno';

// matplotlib's maps sampled at 9 evenly spaced points, interpolated linearly in between.
const COLOR_MAPS: Record<ColorMap, readonly string[]> = {
  viridis: ['#440154', '#472c7a', '#3b518b', '#2c718e', '#21918c', '#27ad81', '#5cc863', '#aadc32', '#fde725'],
  inferno: ['#000004', '#1f0c48', '#550f6d', '#88226a', '#ba3655', '#e35933', '#f98e09', '#f9cb35', '#fcffa4'],
};

export interface HeatMapOptions {
  /** Output size: a number for a square, default the input's h x w. */
  size?: number | { width: number; height: number };
  colorMap?: ColorMap;
  /** Values mapped to the ends of the colour map; default the values' own min and max. */
  range?: readonly [number, number];
}

/** Colours an h x w map of values (row-major) into an RgbImage. */
export function heatMap(values: Float32Array, h: number, w: number, options: HeatMapOptions = {}): RgbImage {
  if (values.length !== h * w) throw new Error(`heatMap: ${values.length} values are not ${h}x${w}`);
  const { size = { width: w, height: h }, colorMap = 'viridis' } = options;
  const { width, height } = typeof size === 'number' ? { width: size, height: size } : size;

  let [low, high] = options.range ?? [Infinity, -Infinity];
  if (!options.range) {
    for (const v of values) [low, high] = [Math.min(low, v), Math.max(high, v)];
  }
  const scale = high > low ? 1 / (high - low) : 0;
  const normalised = values.map((v) => Math.min(1, Math.max(0, (v - low) * scale)));

  const upscaled = resizeBilinear(normalised, h, w, height, width);
  const stops = COLOR_MAPS[colorMap].map(parseHex);
  const image = createImage(width, height);
  const plane = width * height;
  for (let i = 0; i < plane; i++) {
    const [r, g, b] = sampleColorMap(stops, upscaled[i]);
    image.data[i] = r;
    image.data[plane + i] = g;
    image.data[2 * plane + i] = b;
  }
  return image;
}

/** `image * (1 - alpha) + heat * alpha`; both must be the same size. */
export function overlay(image: RgbImage, heat: RgbImage, alpha = 0.5): RgbImage {
  if (image.width !== heat.width || image.height !== heat.height) {
    throw new Error(`overlay: heat map is ${heat.width}x${heat.height}, image is ${image.width}x${image.height}`);
  }
  const out = createImage(image.width, image.height);
  for (let i = 0; i < out.data.length; i++) out.data[i] = image.data[i] * (1 - alpha) + heat.data[i] * alpha;
  return out;
}

/** The colour at t in [0, 1] of a map given by evenly spaced stops. */
function sampleColorMap(stops: readonly Rgb[], t: number): Rgb {
  const position = t * (stops.length - 1);
  const i = Math.min(Math.floor(position), stops.length - 2);
  const f = position - i;
  const [a, b] = [stops[i], stops[i + 1]];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

function parseHex(hex: string): Rgb {
  const byte = (i: number) => parseInt(hex.slice(i, i + 2), 16) / 255;
  return [byte(1), byte(3), byte(5)];
}

/**
 * Bilinear resize of a single-channel row-major map, sampling at pixel centres with edges
 * clamped (torch's `interpolate(mode='bilinear', align_corners=False)`, no antialiasing).
 */
function resizeBilinear(values: Float32Array, h: number, w: number, outH: number, outW: number): Float32Array {
  const out = new Float32Array(outH * outW);
  for (let y = 0; y < outH; y++) {
    const sy = Math.min(h - 1, Math.max(0, ((y + 0.5) * h) / outH - 0.5));
    const y0 = Math.floor(sy);
    const y1 = Math.min(h - 1, y0 + 1);
    const fy = sy - y0;
    for (let x = 0; x < outW; x++) {
      const sx = Math.min(w - 1, Math.max(0, ((x + 0.5) * w) / outW - 0.5));
      const x0 = Math.floor(sx);
      const x1 = Math.min(w - 1, x0 + 1);
      const fx = sx - x0;
      const top = values[y0 * w + x0] * (1 - fx) + values[y0 * w + x1] * fx;
      const bottom = values[y1 * w + x0] * (1 - fx) + values[y1 * w + x1] * fx;
      out[y * outW + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}
