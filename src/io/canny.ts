// Canny edge detection (Canny 1986), the preprocessor of the canny ControlNets: white edges on
// black from an ordinary picture. Gaussian blur, Sobel gradients, non-maximum suppression along the
// gradient, then a double threshold with hysteresis (weak edges survive only when connected to
// strong ones). Thresholds are on the gradient magnitude of 0–255 intensities, the scale of
// OpenCV's cv2.Canny that AUTOMATIC1111's ControlNet extension calls (defaults 100 and 200).

import { type RgbImage, createImage } from './image.ts';

export interface CannyOptions {
  /** Gradient magnitudes below this are never edges (default 100). */
  low?: number;
  /** Magnitudes from this up are edges; those between low and high only when connected to one (default 200). */
  high?: number;
  /** Standard deviation of the Gaussian blur in pixels, 0 for none (default 1). */
  sigma?: number;
}

export const CANNY_DEFAULTS = { low: 100, high: 200, sigma: 1 };

/** The edge map of `image`: 1 (white) on edge pixels, 0 elsewhere, in all three channels. */
export function canny(image: RgbImage, options: CannyOptions = {}): RgbImage {
  const [low, high, sigma] = [options.low ?? CANNY_DEFAULTS.low, options.high ?? CANNY_DEFAULTS.high, options.sigma ?? CANNY_DEFAULTS.sigma];
  if (!(low >= 0 && high >= low)) throw new Error(`canny: thresholds must satisfy 0 ≤ low ≤ high, got low ${low}, high ${high}`);
  if (!(sigma >= 0 && sigma <= 20)) throw new Error(`canny: sigma must be from 0 to 20, got ${sigma}`);
  const { width, height } = image;
  const gray = blur(luma(image), width, height, sigma);
  const { magnitude, direction } = sobel(gray, width, height);
  const thin = suppressNonMaxima(magnitude, direction, width, height);
  const edges = hysteresis(thin, width, height, low, high);
  const out = createImage(width, height);
  for (let c = 0; c < 3; c++) out.data.set(edges, c * width * height);
  return out;
}

/** ITU-R BT.601 luma in 0–255, as OpenCV's RGB → gray. */
function luma(image: RgbImage): Float32Array {
  const plane = image.width * image.height;
  const d = image.data;
  const out = new Float32Array(plane);
  for (let i = 0; i < plane; i++) out[i] = 255 * (0.299 * d[i] + 0.587 * d[plane + i] + 0.114 * d[2 * plane + i]);
  return out;
}

/** Separable Gaussian blur, radius ⌈3σ⌉, edges replicated. */
function blur(src: Float32Array, width: number, height: number, sigma: number): Float32Array {
  if (sigma === 0) return src;
  const radius = Math.ceil(3 * sigma);
  const kernel = Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-((i - radius) ** 2) / (2 * sigma * sigma)));
  const total = kernel.reduce((a, b) => a + b, 0);
  const weights = kernel.map((k) => k / total);
  const pass = (input: Float32Array, dx: number, dy: number): Float32Array => {
    const out = new Float32Array(input.length);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        let sum = 0;
        for (let k = -radius; k <= radius; k++) {
          const sx = Math.min(width - 1, Math.max(0, x + k * dx));
          const sy = Math.min(height - 1, Math.max(0, y + k * dy));
          sum += weights[k + radius] * input[sy * width + sx];
        }
        out[y * width + x] = sum;
      }
    }
    return out;
  };
  return pass(pass(src, 1, 0), 0, 1);
}

/** 3×3 Sobel gradients: magnitude √(gx² + gy²) and the direction quantised to 0°, 45°, 90°, 135° (0–3). */
function sobel(src: Float32Array, width: number, height: number): { magnitude: Float32Array; direction: Uint8Array } {
  const magnitude = new Float32Array(width * height);
  const direction = new Uint8Array(width * height);
  const at = (x: number, y: number) => src[Math.min(height - 1, Math.max(0, y)) * width + Math.min(width - 1, Math.max(0, x))];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const gx = at(x + 1, y - 1) + 2 * at(x + 1, y) + at(x + 1, y + 1) - at(x - 1, y - 1) - 2 * at(x - 1, y) - at(x - 1, y + 1);
      const gy = at(x - 1, y + 1) + 2 * at(x, y + 1) + at(x + 1, y + 1) - at(x - 1, y - 1) - 2 * at(x, y - 1) - at(x + 1, y - 1);
      magnitude[y * width + x] = Math.hypot(gx, gy);
      // Angle folded into [0°, 180°), rounded to the nearest of the four neighbour directions.
      const angle = ((Math.atan2(gy, gx) * 180) / Math.PI + 180) % 180;
      direction[y * width + x] = Math.round(angle / 45) % 4;
    }
  }
  return { magnitude, direction };
}

/** Neighbour offsets [dx, dy] along each quantised gradient direction. */
const ALONG: [number, number][] = [[1, 0], [1, 1], [0, 1], [-1, 1]];

/** Keeps a pixel only where its magnitude peaks across the edge (ties go to the first of two). */
function suppressNonMaxima(magnitude: Float32Array, direction: Uint8Array, width: number, height: number): Float32Array {
  const out = new Float32Array(magnitude.length);
  const at = (x: number, y: number) => (x < 0 || y < 0 || x >= width || y >= height ? 0 : magnitude[y * width + x]);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const m = magnitude[y * width + x];
      const [dx, dy] = ALONG[direction[y * width + x]];
      if (m > at(x - dx, y - dy) && m >= at(x + dx, y + dy)) out[y * width + x] = m;
    }
  }
  return out;
}

/** Strong pixels (≥ high) and every weak one (≥ low) 8-connected to them through weak ones. */
function hysteresis(thin: Float32Array, width: number, height: number, low: number, high: number): Float32Array {
  const edges = new Float32Array(thin.length);
  const stack: number[] = [];
  for (let i = 0; i < thin.length; i++) {
    if (thin[i] >= high && thin[i] > 0) {
      edges[i] = 1;
      stack.push(i);
    }
  }
  while (stack.length) {
    const i = stack.pop()!;
    const [x, y] = [i % width, Math.floor(i / width)];
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        const [nx, ny] = [x + dx, y + dy];
        if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
        const j = ny * width + nx;
        if (!edges[j] && thin[j] >= low && thin[j] > 0) {
          edges[j] = 1;
          stack.push(j);
        }
      }
    }
  }
  return edges;
}
