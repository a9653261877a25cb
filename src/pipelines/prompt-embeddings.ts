// The conditioning a UNet cross-attends to, from prompts that may carry AUTOMATIC1111's emphasis
// syntax or run past CLIP's 75-token window (diffusers' lpw_stable_diffusion.py semantics):
//
//   tokens   each prompt's weighted tokens (prompt-tokens.ts), laid out in 77-token chunks; the
//            prompts and negative prompts of one run share a chunk count (the longest decides), so
//            every context has 77 · chunks positions
//   states   each chunk encoded on its own, BOS/EOS states kept, concatenated
//   weights  e ← e · w, then e ← e · mean(e_before) / mean(e · w) over all of a prompt's positions
//            and features (lpw's mean-preserving rescale; A1111 rescales per chunk)
//
// A prompt without syntax that fits one chunk takes the plain path (`encodePrompts`), so its states
// are exactly what they were before prompt syntax existed.

import type { ClipTokenizer } from '../tokenizers/clip.ts';
import { hasPromptSyntax } from '../tokenizers/prompt-syntax.ts';
import { type PromptTokens, chunksNeeded, isWeighted, layoutChunks, promptTokens } from '../tokenizers/prompt-tokens.ts';
import type { StableDiffusion } from './stable-diffusion.ts';

export interface PromptSyntaxOptions {
  /** Read AUTOMATIC1111's emphasis syntax and BREAK (default true); false reads prompts literally. */
  promptSyntax?: boolean;
  /**
   * The most 75-token chunks a prompt may use; longer prompts lose their tail with a warning.
   * Default: no limit, as AUTOMATIC1111 (lpw_stable_diffusion.py's max_embeddings_multiples is 3).
   */
  maxChunks?: number;
}

export interface PromptEncodeOptions extends PromptSyntaxOptions {
  clipSkip?: number;
  /** At least this many chunks (a context shared with prompts encoded elsewhere, e.g. an edit's target). */
  minChunks?: number;
  onWarning?: (message: string) => void;
}

export interface PromptEmbeddings {
  /** [prompts, tokens, C] */
  cond: Float32Array;
  /** [negatives, tokens, C] when negatives were given. */
  uncond?: Float32Array;
  /** SDXL: [prompts, P] and [negatives, P] pooled text embeddings (of each prompt's first chunk). */
  pooled?: { cond: Float32Array; uncond?: Float32Array };
  /** Context positions per prompt: 77 · chunks. */
  tokens: number;
  chunks: number;
}

/** The weighted tokens of several prompts and the chunk count they share. */
export function planPromptChunks(tokenizer: ClipTokenizer, prompts: readonly string[], options: PromptSyntaxOptions = {}): { tokens: PromptTokens[]; chunks: number } {
  const maxChunks = options.maxChunks ?? Infinity;
  if (!(maxChunks >= 1 && (Number.isInteger(maxChunks) || maxChunks === Infinity))) throw new RangeError(`maxChunks must be a whole number ≥ 1, got ${maxChunks}`);
  const tokens = prompts.map((p) => promptTokens(tokenizer, p, { syntax: options.promptSyntax }));
  return { tokens, chunks: Math.max(1, ...tokens.map((t) => chunksNeeded(tokenizer, t, maxChunks))) };
}

/** Whether these prompts condition exactly as before prompt syntax: one chunk, no weights, nothing to parse. */
function isPlain(prompts: readonly string[], plan: { tokens: PromptTokens[]; chunks: number }, syntax: boolean): boolean {
  return plan.chunks === 1 && plan.tokens.every((t) => !isWeighted(t)) && (!syntax || prompts.every((p) => !hasPromptSyntax(p)));
}

/**
 * Encodes prompts and (for guidance) negative prompts into contexts of one shared length. SDXL's
 * two towers each read the prompts with their own tokenizer (their pad tokens differ); their states
 * are concatenated per position before the weighting.
 */
export async function encodePromptEmbeddings(sd: StableDiffusion, prompts: readonly string[], negatives: readonly string[] | undefined, options: PromptEncodeOptions = {}): Promise<PromptEmbeddings> {
  const towers = sd.tokenizers;
  const all = [...prompts, ...(negatives ?? [])];
  const plans = towers.map((tokenizer) => planPromptChunks(tokenizer, all, options));
  const chunks = Math.max(options.minChunks ?? 1, ...plans.map((p) => p.chunks));
  const length = towers[0]!.modelMaxLength;
  if (chunks === 1 && plans.every((plan) => isPlain(all, plan, options.promptSyntax !== false))) {
    const [cond, uncond] = await Promise.all([sd.encodeConditioning([...prompts], options.clipSkip), negatives ? sd.encodeConditioning([...negatives], options.clipSkip) : undefined]);
    return { cond: cond.states, uncond: uncond?.states, ...pooledPair(cond.pooled, uncond?.pooled), tokens: length, chunks: 1 };
  }
  const layouts = plans.map((plan, t) => plan.tokens.map((tokens) => layoutChunks(towers[t]!, tokens, chunks)));
  const warn = options.onWarning ?? ((message: string) => console.warn(`warning: ${message}`));
  layouts[0]!.forEach((l, i) => l.dropped && warn(`prompt ${JSON.stringify(all[i]!.slice(0, 40))}… truncated to ${chunks} chunks of ${length - 2} tokens: dropped its last ${l.dropped} tokens`));
  const ids = layouts.map((tower) => {
    const rows = new Int32Array(all.length * chunks * length);
    tower.forEach((l, i) => rows.set(l.ids, i * chunks * length));
    return rows;
  });
  const { states, pooled } = await sd.encodeTokenIds(ids, options.clipSkip);
  const item = chunks * length * sd.contextShape[1];
  layouts[0]!.forEach((l, i) => {
    if (isWeighted(plans[0]!.tokens[i]!)) weightStates(states.subarray(i * item, (i + 1) * item), l.weights);
  });
  const split = prompts.length * item;
  // SDXL's pooled vector comes from each prompt's first chunk, as AUTOMATIC1111 takes it.
  const firstChunks = pooled && firstRows(pooled, all.length, chunks);
  const pooledSplit = prompts.length * sd.pooledWidth;
  return {
    cond: states.slice(0, split),
    uncond: negatives ? states.slice(split) : undefined,
    ...pooledPair(firstChunks?.slice(0, pooledSplit), negatives ? firstChunks?.slice(pooledSplit) : undefined),
    tokens: chunks * length,
    chunks,
  };
}

function pooledPair(cond: Float32Array | undefined, uncond: Float32Array | undefined): { pooled?: PromptEmbeddings['pooled'] } {
  return cond ? { pooled: { cond, ...(uncond ? { uncond } : {}) } } : {};
}

/** Row 0 of every group of `chunks` rows of [items · chunks, P]. */
function firstRows(rows: Float32Array, items: number, chunks: number): Float32Array {
  const width = rows.length / (items * chunks);
  const out = new Float32Array(items * width);
  for (let i = 0; i < items; i++) out.set(rows.subarray(i * chunks * width, (i * chunks + 1) * width), i * width);
  return out;
}

/**
 * lpw's emphasis in place: states [positions, C] times each position's weight, then rescaled so
 * that the mean over all values is what it was (fp32 steps as torch takes them). A mean of zero
 * after weighting (lpw divides 0/0 into NaN) leaves the weighted states unrescaled.
 */
export function weightStates(states: Float32Array, weights: Float32Array): void {
  const dim = states.length / weights.length;
  const before = Math.fround(mean(states));
  for (let p = 0; p < weights.length; p++) {
    const w = Math.fround(weights[p]!);
    if (w === 1) continue;
    for (let c = p * dim; c < (p + 1) * dim; c++) states[c] = Math.fround(states[c]! * w);
  }
  const ratio = Math.fround(before / Math.fround(mean(states)));
  if (!Number.isFinite(ratio)) return;
  for (let i = 0; i < states.length; i++) states[i] = Math.fround(states[i]! * ratio);
}

function mean(values: Float32Array): number {
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}
