// Token grounding (TokenCompose's token loss, Wang et al. 2024): while the UNet trains, each
// caption word's cross-attention map is pulled onto the picture's object. For a token k of a
// caption and a cross-attention layer, share = Σ_object A[:, k] / Σ_all A[:, k] over the query
// positions, and the loss is (1 − share)², averaged over the caption's tokens, the heads, the batch
// and every cross-attention layer the UNet has (each at its own map size).
//
// The DDPM loss alone leaves a small UNet's cross-attention spatially flat: it reads the prompt at
// every pixel alike, so Prompt-to-Prompt's heat maps and local blend masks do not find the object.
// The object here is what is not background white (`foregroundMask`, the same test the edit checks
// use), which suits pictures composited on white such as the emoji set.

import { Tensor, add, div, mean, mul, reshape, sub, sum } from '../engine/index.ts';
import { areaAverage, foregroundMask } from '../data/colour.ts';
import type { RgbImage } from '../io/image.ts';
import type { AttentionCall, AttentionHook } from '../models/attention.ts';
import type { ClipTokenizer } from '../tokenizers/clip.ts';

/** One cross-attention map size's object-mask input: [B, height · width], each cell's object share. */
export interface ObjectMaskInput {
  name: string;
  input: Tensor;
  height: number;
  width: number;
}

export interface GroundingLoss {
  /** Pass as the UNet's `attentionHook` (it asks only for cross-attention layers). */
  hook: AttentionHook;
  /** `grounded_tokens` [B, tokens]: each grounded token's weight (a caption's sum to 1, 0 elsewhere). */
  tokens: Tensor;
  /** The inputs made while the UNet was traced, one per map size its cross-attention layers have. */
  masks(): ObjectMaskInput[];
  /** The loss: call after the UNet's forward has been traced. */
  loss(): Tensor;
}

export function groundingLoss(batch: number, tokenCount: number): GroundingLoss {
  const tokens = Tensor.input('grounded_tokens', [batch, tokenCount]);
  const masks = new Map<string, ObjectMaskInput>();
  const terms: Tensor[] = [];
  const maskFor = (height: number, width: number): Tensor => {
    const key = `${height}x${width}`;
    const name = `object_mask_${key}`;
    if (!masks.has(key)) masks.set(key, { name, input: Tensor.input(name, [batch, height * width]), height, width });
    return masks.get(key)!.input;
  };
  const hook: AttentionHook = {
    wants: (layer) => layer.isCross,
    attention(call: AttentionCall) {
      const { height, width, probs } = call; // probs [B, heads, Lq, tokens]
      if (typeof height !== 'number' || typeof width !== 'number') throw new Error('token grounding needs a fixed training resolution');
      terms.push(groundingTerm(probs, maskFor(height, width), tokens));
      return undefined;
    },
  };
  return {
    hook,
    tokens,
    masks: () => [...masks.values()],
    loss() {
      if (!terms.length) throw new Error('token grounding: the UNet has no cross-attention layer');
      return div(terms.reduce((a, b) => add(a, b)), terms.length);
    },
  };
}

/**
 * One layer's term, the mean over items b and heads h of Σ_k tokens[b, k] · (1 − share[b, h, k])²,
 * for attention probabilities [B, heads, Lq, T], object masks [B, Lq] and token weights [B, T].
 */
export function groundingTerm(probs: Tensor, mask: Tensor, tokens: Tensor): Tensor {
  const [batch, , lq, tokenCount] = probs.shape;
  const inside = sum(mul(probs, reshape(mask, [batch, 1, lq, 1])), 2); // [B, heads, T]
  const share = div(inside, add(sum(probs, 2), 1e-6));
  const miss = sub(1, share);
  const weighted = mul(mul(miss, miss), reshape(tokens, [batch, 1, tokenCount]));
  return mean(sum(weighted, 2));
}

/** `grounded_tokens` rows: the caption's own tokens (BOS and end-of-text excluded) share a weight of 1; "" grounds nothing. */
export function groundedTokenWeights(tokenizer: ClipTokenizer, captions: readonly string[]): Float32Array {
  const length = tokenizer.modelMaxLength;
  const out = new Float32Array(captions.length * length);
  captions.forEach((caption, b) => {
    const n = Math.min(tokenizer.encode(caption).length, length - 2); // truncated as the tokenizer does
    for (let i = 1; i <= n; i++) out[b * length + i] = 1 / n;
  });
  return out;
}

/** Object share above which a picture has no background white to tell its object by. */
const NO_BACKGROUND = 0.98;

/**
 * Refuses a data set the grounding loss cannot use: when most pictures have (almost) no background
 * white — photographs — the object mask is the whole picture and every word would be "grounded"
 * everywhere, which only costs the DDPM loss.
 */
export function checkGroundable(items: readonly { name: string; image: RgbImage }[]): void {
  const full = items.filter(({ image }) => {
    const mask = foregroundMask(image);
    return mask.reduce((a, b) => a + b, 0) / mask.length > NO_BACKGROUND;
  });
  if (full.length * 2 > items.length) {
    throw new Error(
      `--grounding: ${full.length} of ${items.length} training pictures (e.g. ${full[0]!.name}) have no background white around the object ` +
        `(over ${NO_BACKGROUND * 100}% of their pixels are not white), so it has no object to pull the words onto: it suits pictures on white, such as the emoji set`,
    );
  }
}

/** A picture's object share per cell of each mask input's grid, [height · width] each, in `inputs` order. */
export function objectMasks(image: RgbImage, inputs: readonly ObjectMaskInput[]): Float32Array[] {
  const mask = foregroundMask(image);
  return inputs.map(({ height, width }) => areaAverage(mask, image.width, image.height, width, height));
}
