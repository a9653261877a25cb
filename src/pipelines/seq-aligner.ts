// Which source token's cross-attention map each token of an edited prompt takes, for
// Prompt-to-Prompt (Hertz et al. 2022). Both mappers return a `TokenMap` over the padded 77-token
// sequence (BOS at 0), or 77·chunks for long prompts, so one graph input serves every kind of edit:
//
//   word swap  — prompts with the same words but some swapped ("a cat …" → "a dog …"): the swapped
//                word's tokens take the source word's maps, every other token its own position's;
//   refinement — words added or removed ("a cat" → "a fluffy cat"): a global alignment of the two
//                token sequences; edited tokens with no partner in the source keep their own maps.
//
// Words are those of the prompts' plain text (AUTOMATIC1111's brackets and weights are not words).

import type { ClipTokenizer } from '../tokenizers/clip.ts';
import { BREAK_FILL, type PromptTokens, chunksNeeded, promptTokens, tokenPosition, wordPositions } from '../tokenizers/prompt-tokens.ts';

/** How the prompts are read: with or without the emphasis syntax, and in how many chunks (default: as many as they need). */
export interface PromptReading {
  promptSyntax?: boolean;
  chunks?: number;
}

function readPrompts(tokenizer: ClipTokenizer, source: string, target: string, reading: PromptReading) {
  const [x, y] = [source, target].map((p) => promptTokens(tokenizer, p, { syntax: reading.promptSyntax }));
  const chunks = reading.chunks ?? Math.max(chunksNeeded(tokenizer, x!), chunksNeeded(tokenizer, y!));
  return { x: x!, y: y!, chunks, tokens: chunks * tokenizer.modelMaxLength };
}

export interface TokenMap {
  /** [tokens, tokens] row-major: edited map n = Σ_w source map w · matrix[w·tokens + n]. */
  matrix: Float32Array;
  /** Per edited token: 1 takes the mapped source attention, 0 keeps its own (a refinement's new words). */
  alphas: Float32Array;
  tokens: number;
}

/** Every token keeps its own map: the map of an edit that changes no words (pure re-weighting). */
export function identityMap(tokens: number): TokenMap {
  const matrix = new Float32Array(tokens * tokens);
  for (let i = 0; i < tokens; i++) matrix[i * tokens + i] = 1;
  return { matrix, alphas: new Float32Array(tokens).fill(1), tokens };
}

/**
 * The word-swap map. The prompts must have the same number of words and of tokens (a swapped
 * word may change its own token count when another swap makes up for it: its maps are then
 * shared out evenly, as the reference does).
 */
export function replacementMap(tokenizer: ClipTokenizer, source: string, target: string, reading: PromptReading = {}): TokenMap {
  const { x, y, chunks, tokens } = readPrompts(tokenizer, source, target, reading);
  const [wordsX, wordsY] = [x.words, y.words];
  if (wordsX.length !== wordsY.length) {
    throw new Error(`a word swap needs prompts with the same number of words: "${source}" has ${wordsX.length}, "${target}" has ${wordsY.length} (use refine for added words)`);
  }
  const [countX, countY] = [x.ids.length, y.ids.length];
  if (countX !== countY) {
    throw new Error(`a word swap needs prompts with the same number of tokens: "${source}" has ${countX}, "${target}" has ${countY} (use refine)`);
  }
  const swapped = wordsY.flatMap((word, i) => (word !== wordsX[i] ? [i] : []));
  const from = swapped.map((i) => wordPositions(tokenizer, x, i, chunks));
  const to = swapped.map((i) => wordPositions(tokenizer, y, i, chunks));
  const matrix = new Float32Array(tokens * tokens);
  let [i, j, k] = [0, 0, 0];
  while (i < tokens && j < tokens) {
    if (k < swapped.length && from[k].length && from[k][0] === i) {
      for (const [n, t] of to[k].entries()) {
        // Equal lengths pair tokens one to one; otherwise every target token shares all source maps.
        if (from[k].length === to[k].length) matrix[from[k][n] * tokens + t] = 1;
        else for (const s of from[k]) matrix[s * tokens + t] = 1 / to[k].length;
      }
      i += from[k].length;
      j += to[k].length;
      k++;
    } else {
      matrix[i * tokens + j] = 1;
      i++;
      j++;
    }
  }
  return { matrix, alphas: new Float32Array(tokens).fill(1), tokens };
}

/**
 * The refinement map from a global alignment of the two prompts' token ids, each chunk's BOS and
 * EOS included (one chunk: BOS + tokens + EOS, as the reference aligns them).
 */
export function refinementMap(tokenizer: ClipTokenizer, source: string, target: string, reading: PromptReading = {}): TokenMap {
  const { x, y, chunks, tokens } = readPrompts(tokenizer, source, target, reading);
  const xs = withEnds(tokenizer, x, chunks);
  const ys = withEnds(tokenizer, y, chunks);
  const partner = alignTokens(xs.ids, ys.ids);
  const matrix = new Float32Array(tokens * tokens);
  const alphas = new Float32Array(tokens).fill(1);
  const aligned = new Uint8Array(tokens);
  ys.positions.forEach((n, j) => {
    const w = partner[j]!;
    if (w < 0) alphas[n] = 0;
    else matrix[xs.positions[w]! * tokens + n] = 1;
    aligned[n] = 1;
  });
  // Padding after the edited prompt's end takes the source's same position (the reference's rule).
  for (let n = 0; n < tokens; n++) if (!aligned[n]) matrix[n * tokens + n] = 1;
  return { matrix, alphas, tokens };
}

/** Each chunk's BOS, tokens and EOS, with their positions in the 77·chunks sequence. */
function withEnds(tokenizer: ClipTokenizer, t: PromptTokens, chunks: number): { ids: number[]; positions: number[] } {
  const length = tokenizer.modelMaxLength;
  const ids: number[] = [];
  const positions: number[] = [];
  for (let c = 0; c < chunks; c++) {
    ids.push(tokenizer.bosTokenId);
    positions.push(c * length);
    let last = c * length;
    for (let k = c * (length - 2); k < Math.min(t.ids.length, (c + 1) * (length - 2)); k++) {
      if (t.ids[k] === BREAK_FILL) break;
      ids.push(t.ids[k]!);
      positions.push((last = tokenPosition(tokenizer, k)));
    }
    ids.push(tokenizer.eosTokenId);
    positions.push(last + 1);
  }
  return { ids, positions };
}

/**
 * Needleman–Wunsch global alignment (match +1, mismatch −1, gap 0): for each element of `y`, the
 * index of the element of `x` aligned to it, or −1 for an insertion. Ties prefer a gap in `x`,
 * then a gap in `y`, then the diagonal, as Prompt-to-Prompt's aligner does.
 */
export function alignTokens(x: readonly number[], y: readonly number[]): number[] {
  const GAP = 0;
  const cols = y.length + 1;
  const score = new Int32Array((x.length + 1) * cols);
  const LEFT = 1;
  const UP = 2;
  const DIAG = 3;
  const trace = new Uint8Array(score.length);
  for (let j = 1; j < cols; j++) [score[j], trace[j]] = [j * GAP, LEFT];
  for (let i = 1; i <= x.length; i++) [score[i * cols], trace[i * cols]] = [i * GAP, UP];
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++) {
      const left = score[i * cols + j - 1] + GAP;
      const up = score[(i - 1) * cols + j] + GAP;
      const diag = score[(i - 1) * cols + j - 1] + (x[i - 1] === y[j - 1] ? 1 : -1);
      const best = Math.max(left, up, diag);
      score[i * cols + j] = best;
      trace[i * cols + j] = best === left ? LEFT : best === up ? UP : DIAG;
    }
  }
  const partner = new Array<number>(y.length).fill(-1);
  let [i, j] = [x.length, y.length];
  while (i > 0 || j > 0) {
    const move = i === 0 ? LEFT : j === 0 ? UP : trace[i * cols + j];
    if (move === DIAG) partner[--j] = --i;
    else if (move === LEFT) partner[--j] = -1;
    else i--;
  }
  return partner;
}
