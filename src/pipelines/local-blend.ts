// Local blending for Prompt-to-Prompt: the edit may change only where the chosen words are. After
// every step a mask is made from those words' cross-attention maps (summed over the steps so far,
// averaged over heads and the layers at the grid `attentionMapGrid` picks: latent/4 for Stable
// Diffusion as in the reference, the finest cross-attention grid of a smaller UNet), dilated by a
// 3×3 max-pool, scaled up to the latents, normalised to a peak of 1 and thresholded; the masks of
// the source and the edit are united, and outside them the edited latents are reset to the
// source's.

import type { ClipTokenizer } from '../tokenizers/clip.ts';
import { chunksNeeded, findWordPositions, promptTokens } from '../tokenizers/prompt-tokens.ts';
import type { Shape4 } from '../models/vae-runner.ts';
import { mixByMask, resizeNearest } from './masks.ts';

export interface LocalBlendOptions {
  /** Words of the source or the edited prompt (each must be in at least one). */
  words: readonly string[];
  /** Fraction of the mask's peak above which the edit is kept; default 0.3. */
  threshold?: number;
}

export class LocalBlend {
  readonly threshold: number;
  /** Per prompt (source, edit): the token positions of the words found in it. */
  readonly tokens: [number[], number[]];

  /** `reading`: the prompts' syntax and chunk count, as the edit encodes them (default: as they need). */
  constructor(tokenizer: ClipTokenizer, prompts: readonly [string, string], options: LocalBlendOptions, reading: { promptSyntax?: boolean; chunks?: number } = {}) {
    this.threshold = options.threshold ?? 0.3;
    if (!options.words.length) throw new Error('local-blend: no words given');
    this.tokens = [[], []];
    const read = prompts.map((p) => promptTokens(tokenizer, p, { syntax: reading.promptSyntax }));
    const chunks = reading.chunks ?? Math.max(...read.map((t) => chunksNeeded(tokenizer, t)));
    for (const word of options.words) {
      const found = read.map((t) => findWordPositions(tokenizer, t, word, chunks));
      if (!found[0].length && !found[1].length) throw new Error(`local-blend: "${word}" is a word of neither "${prompts[0]}" nor "${prompts[1]}"`);
      found.forEach((positions, b) => this.tokens[b].push(...positions));
    }
  }

  /**
   * The latent-size mask (1 = keep the edit) from maps [2, mapH·mapW, tokens] (any positive scale:
   * sums or averages over steps give the same mask).
   */
  mask(maps: Float32Array, mapH: number, mapW: number, latentH: number, latentW: number): Uint8Array {
    const queries = mapH * mapW;
    const tokens = maps.length / (2 * queries);
    const union = new Uint8Array(latentH * latentW);
    for (let b = 0; b < 2; b++) {
      const words = new Float32Array(queries);
      for (let q = 0; q < queries; q++) {
        const at = (b * queries + q) * tokens;
        for (const t of this.tokens[b]) words[q] += maps[at + t];
      }
      const dilated = maxPool3x3(words, mapH, mapW);
      const scaled = resizeNearest(dilated, mapH, mapW, latentH, latentW);
      const peak = scaled.reduce((a, v) => Math.max(a, v), 0);
      if (peak > 0) scaled.forEach((v, i) => v / peak > this.threshold && (union[i] = 1));
    }
    return union;
  }
}

/** Latents [2, C, h, w] (source, edit): the edit keeps its values where mask is 1, the source's elsewhere. */
export function blendLatents(latents: Float32Array, shape: Shape4, mask: Uint8Array): Float32Array {
  const [b, c, h, w] = shape;
  if (b !== 2 || mask.length !== h * w) throw new Error(`local blend needs latents [2, C, h, w] and an h·w mask, got [${shape.join(', ')}] and ${mask.length}`);
  const item = c * h * w;
  const out = new Float32Array(latents);
  out.set(mixByMask(latents.subarray(0, item), latents.subarray(item), mask), item);
  return out;
}

/** Max over each 3×3 neighbourhood, stride 1, edges padded with −∞. */
function maxPool3x3(values: Float32Array, h: number, w: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let m = -Infinity;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const [yy, xx] = [y + dy, x + dx];
          if (yy >= 0 && yy < h && xx >= 0 && xx < w) m = Math.max(m, values[yy * w + xx]);
        }
      }
      out[y * w + x] = m;
    }
  }
  return out;
}
