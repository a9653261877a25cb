// A prompt as weighted tokens laid out in 77-token chunks, for prompts longer than CLIP's 75-token
// window (AUTOMATIC1111, diffusers' lpw_stable_diffusion.py): token k sits in chunk ⌊k/75⌋ at
// position 1 + k mod 75, every chunk being BOS + its tokens + EOS + padding, encoded on its own;
// the chunks' states are concatenated, so the UNet cross-attends over 77·chunks positions.
//
// Each token also knows which word of the prompt's plain text it spells (the syntax characters are
// not words), so Prompt-to-Prompt and heat maps can name words across chunks.

import type { ClipTokenizer } from './clip.ts';
import { type PromptFragment, parsePromptAttention } from './prompt-syntax.ts';
import { WHITESPACE, WORD_SEPARATOR } from './words.ts';

/** An id that fills the rest of a chunk after BREAK: laid out as EOS + padding, never encoded as itself. */
export const BREAK_FILL = -1;

export interface PromptTokens {
  /** Token ids without BOS/EOS; BREAK_FILL where a BREAK ended a chunk early. */
  ids: number[];
  /** Per token, its emphasis (1 without syntax). */
  weights: number[];
  /** Per token, whether it begins a word or pre-token (as `ClipTokenizer.wordTokenIndices` matches words); true for BREAK_FILL. */
  wordStarts: boolean[];
  /** Per token, the index of the word it spells in `words` (−1 for BREAK_FILL). */
  wordOf: number[];
  /** The whitespace-separated words of the prompt's plain text. */
  words: string[];
}

export interface PromptTokenOptions {
  /** Read AUTOMATIC1111's emphasis syntax and BREAK (default true); false reads the prompt literally. */
  syntax?: boolean;
}

/** The weighted tokens of a prompt; each syntax fragment is tokenized on its own, as A1111 and lpw do. */
export function promptTokens(tokenizer: ClipTokenizer, prompt: string, options: PromptTokenOptions = {}): PromptTokens {
  const fragments: PromptFragment[] = options.syntax === false ? [{ text: prompt, weight: 1 }] : parsePromptAttention(prompt);
  const chunk = tokenizer.modelMaxLength - 2;
  const out: PromptTokens = { ids: [], weights: [], wordStarts: [], wordOf: [], words: [] };
  let wordOpen = false; // whether the last word may continue into the next fragment ("(cat)s")
  for (const fragment of fragments) {
    if (!('text' in fragment)) {
      // A1111: BREAK closes the current chunk, even an empty one, but not one just filled.
      const filled = out.ids.length % chunk;
      if (filled || !out.ids.length || out.ids.at(-1) === BREAK_FILL) {
        for (let i = filled; i < chunk; i++) push(out, BREAK_FILL, 1, true, -1);
      }
      wordOpen = false;
      continue;
    }
    const { ids, wordStarts } = tokenizer.encodeWithWordStarts(fragment.text);
    const text = fragment.text.replace(WHITESPACE, ' ');
    const words = text.split(WORD_SEPARATOR).filter((w) => w !== '');
    const continues = wordOpen && words.length > 0 && !WORD_SEPARATOR.test(text[0]!);
    const counts = words.map((w) => tokenizer.encode(w).length);
    // Tokenizing the words one by one gives the fragment's tokens (CLIP splits at whitespace first);
    // if an added token spans words it would not, and the fragment's tokens go to its first word.
    const exact = counts.reduce((a, b) => a + b, 0) === ids.length;
    const first = continues ? out.words.length - 1 : out.words.length;
    words.forEach((word, i) => {
      if (i === 0 && continues) out.words[first] += word;
      else out.words.push(word);
    });
    let word = 0;
    let left = counts[0] ?? 0;
    ids.forEach((id, k) => {
      while (exact && left === 0 && word < counts.length - 1) left = counts[++word]!;
      push(out, id, fragment.weight, wordStarts[k]!, words.length ? first + (exact ? word : 0) : -1);
      left--;
    });
    wordOpen = words.length > 0 && !WORD_SEPARATOR.test(text.at(-1)!);
  }
  return out;
}

function push(t: PromptTokens, id: number, weight: number, wordStart: boolean, wordOf: number): void {
  t.ids.push(id);
  t.weights.push(weight);
  t.wordStarts.push(wordStart);
  t.wordOf.push(wordOf);
}

/** Whether any token has a weight other than 1. */
export function isWeighted(t: PromptTokens): boolean {
  return t.weights.some((w) => w !== 1);
}

/** Chunks the tokens need: ⌈tokens / 75⌉, at least 1, at most `maxChunks`. */
export function chunksNeeded(tokenizer: ClipTokenizer, t: PromptTokens, maxChunks = Infinity): number {
  const chunk = tokenizer.modelMaxLength - 2;
  return Math.max(1, Math.min(maxChunks, Math.ceil(t.ids.length / chunk)));
}

/** Position of token k in the concatenated 77·chunks sequence. */
export function tokenPosition(tokenizer: ClipTokenizer, k: number): number {
  const chunk = tokenizer.modelMaxLength - 2;
  return Math.floor(k / chunk) * tokenizer.modelMaxLength + 1 + (k % chunk);
}

export interface ChunkLayout {
  /** [chunks · 77] ids, one 77-row per chunk: BOS + tokens + EOS + padding. */
  ids: Int32Array;
  /** [chunks · 77] weights: the tokens', 1 at BOS, EOS and padding. */
  weights: Float32Array;
  /** Tokens that did not fit into `chunks` chunks. */
  dropped: number;
}

/** The tokens laid out in `chunks` chunks (longer prompts lose their tail). */
export function layoutChunks(tokenizer: ClipTokenizer, t: PromptTokens, chunks: number): ChunkLayout {
  const length = tokenizer.modelMaxLength;
  const chunk = length - 2;
  const ids = new Int32Array(chunks * length).fill(tokenizer.padTokenId);
  const weights = new Float32Array(chunks * length).fill(1);
  for (let c = 0; c < chunks; c++) {
    const row = c * length;
    ids[row] = tokenizer.bosTokenId;
    let end = row + 1;
    for (let k = c * chunk; k < Math.min(t.ids.length, (c + 1) * chunk); k++) {
      if (t.ids[k] === BREAK_FILL) break;
      ids[end] = t.ids[k]!;
      weights[end] = t.weights[k]!;
      end++;
    }
    ids[end] = tokenizer.eosTokenId;
  }
  return { ids, weights, dropped: t.ids.slice(chunks * chunk).filter((id) => id !== BREAK_FILL).length };
}

/** Positions (in the 77·chunks sequence) of the tokens of word number `index` of `t.words`. */
export function wordPositions(tokenizer: ClipTokenizer, t: PromptTokens, index: number, chunks: number): number[] {
  const kept = chunks * (tokenizer.modelMaxLength - 2);
  return t.wordOf.flatMap((w, k) => (w === index && k < kept ? [tokenPosition(tokenizer, k)] : []));
}

/**
 * Positions of the tokens that spell `word` (one or more words of text) wherever they begin and
 * end at word boundaries, as `ClipTokenizer.wordTokenIndices` finds them in a plain prompt.
 */
export function findWordPositions(tokenizer: ClipTokenizer, t: PromptTokens, word: string, chunks: number): number[] {
  const target = tokenizer.encode(word);
  const n = target.length;
  const kept = Math.min(t.ids.length, chunks * (tokenizer.modelMaxLength - 2));
  const positions: number[] = [];
  for (let i = 0; n > 0 && i + n <= kept; i++) {
    if (!t.wordStarts[i] || (i + n < t.ids.length && !t.wordStarts[i + n])) continue;
    if (target.every((id, k) => t.ids[i + k] === id)) for (let k = 0; k < n; k++) positions.push(tokenPosition(tokenizer, i + k));
  }
  return positions;
}
