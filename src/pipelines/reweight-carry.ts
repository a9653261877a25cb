// Re-weighting a word whose meaning the tokens after it carry (issue 11). CLIP's text encoder is
// causal: in "red heart" the states of "heart", of EOS and of the padding have all attended to
// "red", so scaling the cross-attention to "red" alone (Prompt-to-Prompt's re-weighting) leaves the
// colour wherever a UNet reads it from the noun or the end of text. With the carry, every later state
// also moves along what the word added to it:
//
//   s ← s + (g − 1) · (s − s∖w)
//
// where s∖w is the state with the word's tokens replaced by padding (positions kept), as Compel and
// InvokeAI down-weight a word. g = f clamped to [0, 1]: ×0 (or less) takes the word out of every
// later state, ×0.5 goes halfway, and ×1 and more leave them as they are. Extrapolating beyond
// either end broke the pictures on the default model (README, "The default model": the end-of-text
// states carry the object's shape; ×3 turned a green heart olive on a yellow ground even at a
// quarter of the slope), so above 1 only the word's attention is scaled, as in the paper. The
// word's own states always stay (its attention carries its factor). Several words add their moves,
// each measured against the prompt's own states (a later re-weighted word moves with the earlier
// ones, not with itself). SDXL's two towers read the same ids (each with its own padding), their
// states concatenated per position, so the same move applies to both; its pooled embedding, which
// sums up the whole prompt like the end-of-text states, moves the same way.

import { isWeighted, layoutChunks } from '../tokenizers/prompt-tokens.ts';
import { type PromptSyntaxOptions, planPromptChunks } from './prompt-embeddings.ts';
import type { PromptToPromptPlan } from './prompt-to-prompt.ts';
import type { StableDiffusion } from './stable-diffusion.ts';
import type { ClipTokenizer } from '../tokenizers/clip.ts';

/** g of the formula above: the share of the word a later state keeps. */
export function carryGain(factor: number): number {
  return Math.min(1, Math.max(0, factor));
}

/** Whether a model's edits carry re-weights when the edit does not say: its nuri.json. */
export function carriesReweightsByDefault(sd: StableDiffusion): boolean {
  return sd.components.defaults?.reweightCarry === true;
}

/**
 * Moves the edited prompt's token states `states` ([77 · plan.chunks, C], the target's row of the
 * edit's conditioning) in place for the plan's re-weighted words, and SDXL's `pooled` embedding of
 * the target ([P]) with them when given.
 */
export async function carryReweights(sd: StableDiffusion, plan: PromptToPromptPlan, states: Float32Array, options: PromptSyntaxOptions & { clipSkip?: number } = {}, pooled?: Float32Array): Promise<void> {
  const words = plan.reweighted.filter((w) => carryGain(w.factor) !== 1 && w.positions.length);
  if (!words.length) return;
  const towers = sd.tokenizers;
  const reads = towers.map((tokenizer) => planPromptChunks(tokenizer, [plan.target], { ...options, promptSyntax: plan.promptSyntax }).tokens[0]!);
  const layouts = towers.map((tokenizer, t) => layoutChunks(tokenizer, reads[t]!, plan.chunks));
  const positions = layouts[0]!.ids.length;
  if (states.length % positions) throw new Error(`reweightCarry: the target's states have ${states.length} values, not a multiple of its ${positions} positions`);
  checkSameTokens(towers, layouts.map((l) => l.ids));
  // Row i: word i's tokens as padding; with emphasis, one more row first: the target's own ids.
  const weighted = isWeighted(reads[0]!);
  const first = weighted ? 1 : 0;
  const rows = towers.map((tokenizer, t) => {
    const ids = layouts[t]!.ids;
    const out = new Int32Array((first + words.length) * positions);
    if (weighted) out.set(ids);
    words.forEach((w, i) => {
      out.set(ids, (first + i) * positions);
      for (const p of w.positions) out[(first + i) * positions + p] = tokenizer.padTokenId;
    });
    return out;
  });
  const encoded = await sd.encodeTokenIds(rows, options.clipSkip);
  const size = states.length;
  const masked = encoded.states.subarray(first * size);
  // Emphasis weights each position and rescales the whole prompt by one ratio (weightStates); the
  // masked rows take the prompt's own ratio, so that the states before a word still agree.
  if (weighted) {
    const { weights } = layouts[0]!;
    const ratio = emphasisRatio(encoded.states.subarray(0, size), states, weights);
    for (let i = 0; i < masked.length; i++) masked[i] *= weights[Math.floor((i % size) / (size / positions))]! * ratio;
  }

  const width = size / positions;
  const own = states.slice();
  const ownPooled = pooled?.slice();
  words.forEach((w, i) => {
    const step = carryGain(w.factor) - 1;
    const without = masked.subarray(i * size, (i + 1) * size);
    const itself = new Set(w.positions);
    for (let p = 0; p < positions; p++) {
      if (itself.has(p)) continue;
      for (let c = p * width; c < (p + 1) * width; c++) states[c] += step * (own[c]! - without[c]!);
    }
    if (pooled && ownPooled && encoded.pooled) {
      // SDXL pools each prompt's first chunk (prompt-embeddings.ts): row `first + i`'s first chunk.
      const at = (first + i) * plan.chunks * pooled.length;
      const withoutPooled = encoded.pooled.subarray(at, at + pooled.length);
      for (let c = 0; c < pooled.length; c++) pooled[c] += step * (ownPooled[c]! - withoutPooled[c]!);
    }
  });
}

/** The towers' ids must be the same tokens (SDXL's share one vocabulary), whatever each pads with. */
function checkSameTokens(towers: readonly ClipTokenizer[], ids: readonly Int32Array[]): void {
  const [a, ...others] = ids;
  others.forEach((b, t) => {
    const same = b.length === a!.length && a!.every((id, p) => id === b[p] || (id === towers[0]!.padTokenId && b[p] === towers[t + 1]!.padTokenId));
    if (!same) throw new Error('reweightCarry: the text towers tokenize the prompt differently, so a word\'s positions are not the same in both');
  });
}

/** The ratio emphasis rescaled `weighted` by: weighted = raw · weight · ratio at every position. */
function emphasisRatio(raw: Float32Array, weighted: Float32Array, weights: Float32Array): number {
  const dim = raw.length / weights.length;
  let [num, den] = [0, 0];
  for (let i = 0; i < raw.length; i++) {
    const unscaled = raw[i]! * weights[Math.floor(i / dim)]!;
    num += weighted[i]! * unscaled;
    den += unscaled * unscaled;
  }
  return den ? num / den : 1;
}
