// The inpainting mask the Studio's brush paints: one value per pixel of the job's picture, 1 where
// the picture is repainted, 0 where it is kept — the server's `Mask`, held binary (the server blurs
// it by maskBlur). Pure functions; the canvas only shows the mask and turns it into a PNG.

import type { RgbImage } from '../io/image.ts';
import { type Mask, binarize, maskFromImage, resizeNearest } from '../pipelines/masks.ts';

export type { Mask };

export function emptyMask(width: number, height: number): Mask {
  return { width, height, data: new Float32Array(width * height) };
}

/**
 * Paints `value` (1 paint, 0 erase) on every pixel whose centre lies within `radius` pixels of the
 * segment from `a` to `b` (image pixels, fractional): a round brush dragged along a stroke.
 */
export function paintSegment(mask: Mask, a: { x: number; y: number }, b: { x: number; y: number }, radius: number, value: 0 | 1): void {
  const { width: w, height: h } = mask;
  const [dx, dy] = [b.x - a.x, b.y - a.y];
  const length2 = dx * dx + dy * dy;
  const r = Math.max(0.5, radius);
  const [x0, x1] = [Math.max(0, Math.floor(Math.min(a.x, b.x) - r)), Math.min(w - 1, Math.ceil(Math.max(a.x, b.x) + r))];
  const [y0, y1] = [Math.max(0, Math.floor(Math.min(a.y, b.y) - r)), Math.min(h - 1, Math.ceil(Math.max(a.y, b.y) + r))];
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const [px, py] = [x + 0.5, y + 0.5];
      // The nearest point of the segment to the pixel's centre.
      const t = length2 === 0 ? 0 : Math.max(0, Math.min(1, ((px - a.x) * dx + (py - a.y) * dy) / length2));
      const [ex, ey] = [px - (a.x + t * dx), py - (a.y + t * dy)];
      if (ex * ex + ey * ey <= r * r) mask.data[y * w + x] = value;
    }
  }
}

/** Repaint what was kept and keep what was repainted (A1111's "Inpaint not masked"). */
export function invertMask(mask: Mask): Mask {
  return { ...mask, data: mask.data.map((v) => 1 - v) };
}

/** The fraction of the picture that is repainted, 0..1. */
export function maskCoverage(mask: Mask): number {
  let painted = 0;
  for (const v of mask.data) painted += v;
  return mask.data.length === 0 ? 0 : painted / mask.data.length;
}

/** The mask at another size, by nearest neighbour (the server's own resize of masks). */
export function resizeMask(mask: Mask, width: number, height: number): Mask {
  if (mask.width === width && mask.height === height) return mask;
  return { width, height, data: resizeNearest(mask.data, mask.height, mask.width, height, width) };
}

/**
 * The mask at another size, both sizes read against the same picture as the server reads it: scaled
 * to cover the size and centred (at the picture's own size, the picture itself). So a mask painted at
 * the job's size lands on the same part of the picture at the picture's own size ("Only masked"), and
 * back; what one size does not see of the picture is kept (0). Without the picture's size, a stretch.
 */
export function refitMask(mask: Mask, width: number, height: number, picture?: { width: number; height: number }): Mask {
  if (!picture || (mask.width === width && mask.height === height)) return resizeMask(mask, width, height);
  const from = coverView(picture, mask.width, mask.height);
  const to = coverView(picture, width, height);
  const out = emptyMask(width, height);
  for (let y = 0; y < height; y++) {
    const sy = Math.floor((to.top + (y + 0.5) / to.scale - from.top) * from.scale);
    if (sy < 0 || sy >= mask.height) continue;
    for (let x = 0; x < width; x++) {
      const sx = Math.floor((to.left + (x + 0.5) / to.scale - from.left) * from.scale);
      if (sx >= 0 && sx < mask.width) out.data[y * width + x] = mask.data[sy * mask.width + sx];
    }
  }
  return out;
}

/** Where a width × height view of the picture (scaled to cover, centred) starts, in picture pixels, and its scale. */
function coverView(picture: { width: number; height: number }, width: number, height: number) {
  const scale = Math.max(width / picture.width, height / picture.height);
  return { scale, left: (picture.width - width / scale) / 2, top: (picture.height - height / scale) / 2 };
}

/**
 * A mask image's pixels (RGBA, as a canvas gives them) as the server reads an uploaded mask:
 * transparency over white, PIL's grey level, then white from ½ up (127 keeps, 128 repaints).
 */
export function maskFromRgba(rgba: ArrayLike<number>, width: number, height: number): Mask {
  const plane = width * height;
  const image: RgbImage = { width, height, channels: 3, data: new Float32Array(3 * plane) };
  for (let i = 0; i < plane; i++) {
    const alpha = rgba[4 * i + 3] / 255;
    // Rounded to 8 bits, as the server's flattened PNG is.
    for (let c = 0; c < 3; c++) image.data[c * plane + i] = Math.round((rgba[4 * i + c] / 255) * alpha * 255 + 255 * (1 - alpha)) / 255;
  }
  return binarize(maskFromImage(image));
}

/** RGBA pixels for a canvas: `on` where the mask repaints, `off` where it keeps. */
export function maskToRgba(mask: Mask, on: readonly number[], off: readonly number[]): Uint8ClampedArray<ArrayBuffer> {
  const out = new Uint8ClampedArray(4 * mask.data.length);
  mask.data.forEach((v, i) => out.set(v >= 0.5 ? on : off, 4 * i));
  return out;
}

/**
 * A compact text form for keeping the mask across reloads: "WxH:" and the lengths of alternating
 * runs of kept and repainted pixels, kept first (a brushed mask is a few long runs per row).
 */
export function encodeMask(mask: Mask): string {
  const runs: number[] = [];
  let current = 0;
  let length = 0;
  for (const v of mask.data) {
    const bit = v >= 0.5 ? 1 : 0;
    if (bit !== current) {
      runs.push(length);
      [current, length] = [bit, 0];
    }
    length++;
  }
  runs.push(length);
  return `${mask.width}x${mask.height}:${runs.map((n) => n.toString(36)).join('.')}`;
}

/** The inverse of encodeMask; undefined for text that is not one (a stale or edited entry). */
export function decodeMask(text: unknown): Mask | undefined {
  if (typeof text !== 'string') return undefined;
  const found = /^(\d{1,5})x(\d{1,5}):([0-9a-z.]*)$/.exec(text);
  if (!found) return undefined;
  const [width, height] = [Number(found[1]), Number(found[2])];
  const mask = emptyMask(width, height);
  let at = 0;
  let bit = 0;
  for (const run of found[3].split('.')) {
    const n = parseInt(run, 36);
    if (!Number.isFinite(n) || at + n > mask.data.length) return undefined;
    mask.data.fill(bit, at, at + n);
    [at, bit] = [at + n, 1 - bit];
  }
  return at === mask.data.length && width > 0 && height > 0 ? mask : undefined;
}
