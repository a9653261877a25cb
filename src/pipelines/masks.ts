// Masks over pictures and latents, shared by Prompt-to-Prompt's local blend and inpainting: a
// mask is one float per position (1 = change here, 0 = keep), resized by torch's `nearest`,
// blurred as AUTOMATIC1111 blurs an inpainting mask, and used to mix two tensors.

import type { RgbImage } from '../io/image.ts';

/** One value per pixel, row-major; 1 = repaint (white), 0 = keep (black). */
export interface Mask {
  width: number;
  height: number;
  data: Float32Array;
}

/** Nearest-neighbour resize as torch's `interpolate(mode='nearest')`: source index ⌊dst · in/out⌋. */
export function resizeNearest(values: Float32Array, h: number, w: number, outH: number, outW: number): Float32Array {
  const out = new Float32Array(outH * outW);
  for (let y = 0; y < outH; y++) {
    const sy = Math.min(h - 1, Math.floor((y * h) / outH));
    for (let x = 0; x < outW; x++) out[y * outW + x] = values[sy * w + Math.min(w - 1, Math.floor((x * w) / outW))];
  }
  return out;
}

/**
 * `base` with `over` mixed in where `mask` is 1: base + m·(over − base), over NCHW data whose
 * planes have mask.length = h·w positions (one mask for every item and channel).
 */
export function mixByMask(base: Float32Array, over: Float32Array, mask: ArrayLike<number>): Float32Array {
  const plane = mask.length;
  if (base.length !== over.length || base.length % plane) throw new Error(`mixByMask: ${base.length} and ${over.length} values do not fit a mask of ${plane}`);
  const out = new Float32Array(base.length);
  for (let i = 0; i < base.length; i++) {
    const m = mask[i % plane];
    out[i] = m === 0 ? base[i] : m === 1 ? over[i] : base[i] + m * (over[i] - base[i]);
  }
  return out;
}

/** The grey level of each pixel as PIL's convert('L') computes it from 8-bit RGB, in [0, 1]. */
export function maskFromImage(image: RgbImage): Mask {
  const plane = image.width * image.height;
  const data = new Float32Array(plane);
  const u8 = (c: number, i: number) => Math.round(image.data[c * plane + i] * 255);
  for (let i = 0; i < plane; i++) data[i] = ((u8(0, i) * 19595 + u8(1, i) * 38470 + u8(2, i) * 7471 + 0x8000) >>> 16) / 255;
  return { width: image.width, height: image.height, data };
}

/** 1 where the mask is at least ½, else 0 (diffusers binarises an inpainting mask: 127 → 0, 128 → 1). */
export function binarize(mask: Mask): Mask {
  return { ...mask, data: mask.data.map((v) => (v >= 0.5 ? 1 : 0)) };
}

/**
 * Gaussian blur with σ = `sigma` pixels along each axis, on a window of 2·⌊2.5σ + ½⌋ + 1 taps with
 * edges reflected (AUTOMATIC1111's mask blur: OpenCV's GaussianBlur). σ 0 leaves the mask as it is.
 */
export function blurMask(mask: Mask, sigma: number): Mask {
  if (!(sigma >= 0) || !Number.isFinite(sigma)) throw new Error(`mask blur must be a number ≥ 0, got ${sigma}`);
  if (sigma === 0) return mask;
  const radius = Math.floor(2.5 * sigma + 0.5);
  const taps = Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-((i - radius) ** 2) / (2 * sigma * sigma)));
  const total = taps.reduce((a, b) => a + b, 0);
  const kernel = taps.map((t) => t / total);
  const { width: w, height: h } = mask;
  // Reflect without repeating the edge (OpenCV's BORDER_REFLECT_101): −1 → 1, n → n − 2.
  const reflect = (i: number, n: number) => {
    if (n === 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
  };
  const rows = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let k = -radius; k <= radius; k++) s += kernel[k + radius] * mask.data[y * w + reflect(x + k, w)];
      rows[y * w + x] = s;
    }
  }
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let k = -radius; k <= radius; k++) s += kernel[k + radius] * rows[reflect(y + k, h) * w + x];
      out[y * w + x] = Math.min(1, Math.max(0, s));
    }
  }
  return { width: w, height: h, data: out };
}

/**
 * AUTOMATIC1111's "fill" start for inpainting: the masked area painted with the colours around it.
 * The kept pixels, premultiplied by their opacity (1 − mask, binarised), are blurred at σ 256, 64,
 * 16, 4, 2 and 0 px and laid over each other (the smaller, the later and the nearer), so each
 * masked pixel takes the colour of the nearest kept ones; kept pixels stay as they are.
 */
export function fillMaskedArea(image: RgbImage, mask: Mask): RgbImage {
  const { width: w, height: h } = image;
  if (mask.width !== w || mask.height !== h) throw new Error(`fill: the mask is ${mask.width}×${mask.height}, the picture ${w}×${h}`);
  const plane = w * h;
  const alpha = Float32Array.from(mask.data, (m) => (m >= 0.5 ? 0 : 1));
  const premultiplied = [0, 1, 2].map((c) => Float32Array.from(alpha, (a, i) => a * image.data[c * plane + i]));
  const out = new Float32Array(3 * plane);
  const outAlpha = new Float32Array(plane);
  for (const [sigma, repeats] of [[256, 1], [64, 1], [16, 2], [4, 4], [2, 2], [0, 1]]) {
    const a = boxGaussian(alpha, w, h, sigma);
    const rgb = premultiplied.map((p) => boxGaussian(p, w, h, sigma));
    for (let r = 0; r < repeats; r++) {
      // Porter–Duff "over", the layer on top: straight colour rgb/a with opacity a.
      for (let i = 0; i < plane; i++) {
        const top = a[i];
        if (top <= 0) continue;
        const keep = outAlpha[i] * (1 - top);
        const total = top + keep;
        for (let c = 0; c < 3; c++) out[c * plane + i] = (rgb[c][i] + out[c * plane + i] * keep) / total;
        outAlpha[i] = total;
      }
    }
  }
  return { width: w, height: h, channels: 3, data: out };
}

/** A Gaussian blur of σ px approximated by three box blurs per axis (edges extended), as PIL blurs. */
function boxGaussian(values: Float32Array, w: number, h: number, sigma: number): Float32Array {
  if (sigma === 0) return values;
  const radius = Math.max(1, Math.round((Math.sqrt(4 * sigma * sigma + 1) - 1) / 2));
  let cur = values;
  for (let pass = 0; pass < 3; pass++) cur = boxBlur(boxBlur(cur, w, h, radius, true), w, h, radius, false);
  return cur;
}

/** Mean over a window of 2r + 1 along rows (or columns), edge values repeated past the border. */
function boxBlur(values: Float32Array, w: number, h: number, r: number, alongRows: boolean): Float32Array {
  const out = new Float32Array(values.length);
  const [lines, length] = alongRows ? [h, w] : [w, h];
  const at = (line: number, k: number) => values[alongRows ? line * w + Math.min(length - 1, Math.max(0, k)) : Math.min(length - 1, Math.max(0, k)) * w + line];
  for (let line = 0; line < lines; line++) {
    let sum = 0;
    for (let k = -r; k <= r; k++) sum += at(line, k);
    for (let k = 0; k < length; k++) {
      out[alongRows ? line * w + k : k * w + line] = sum / (2 * r + 1);
      sum += at(line, k + r + 1) - at(line, k - r);
    }
  }
  return out;
}
