// A Prompt-to-Prompt edit resolved to numbers: the token map (word swap, refinement or none), the
// re-weighting equalizer, and the per-step schedules of cross- and self-attention replacement —
// everything the controller's graph inputs are fed (attention-control.ts). Checking an edit here
// needs only the tokenizer, so bad words are reported before any model runs.

import type { ClipTokenizer } from '../tokenizers/clip.ts';
import { type PromptTokens, findWordPositions } from '../tokenizers/prompt-tokens.ts';
import { P2P_INPUTS } from './attention-control.ts';
import { type PromptSyntaxOptions, planPromptChunks } from './prompt-embeddings.ts';
import { type TokenMap, identityMap, refinementMap, replacementMap } from './seq-aligner.ts';
import type { Feeds } from './stable-diffusion.ts';

/** A fraction of the steps counted from the start, or a [start, end) pair of fractions. */
export type StepRange = number | readonly [number, number];

export interface CrossReplace {
  /** For every token of the edited prompt. */
  default?: StepRange;
  /** For the tokens of these words of the edited prompt. */
  words?: Record<string, StepRange>;
}

export interface PromptToPromptOptions extends PromptSyntaxOptions {
  source: string;
  /** The edited prompt; by default the source itself (pure re-weighting). */
  target?: string;
  /** Align added or removed words (refinement) instead of swapping words one for one. */
  refine?: boolean;
  /** The steps on which the edit takes the source's cross-attention. */
  crossReplace?: StepRange | CrossReplace;
  /** The steps on which the edit takes the source's self-attention. */
  selfReplace?: StepRange;
  /** Scales the cross-attention to words of the edited prompt (1 leaves a word as it is). */
  reweight?: Record<string, number>;
  /**
   * Also scale what a re-weighted word left in the states after it (reweight-carry.ts), for models
   * that read a word's meaning from the words after it. Default: the model's nuri.json, else false.
   */
  reweightCarry?: boolean;
  /** The unconditional prompt: its chunks count towards the shared context length. */
  negativePrompt?: string;
}

/** `crossReplace` in its per-word form: one range for every word is `{ default: range }`. */
export function asCrossReplace(value: StepRange | CrossReplace | undefined): CrossReplace {
  return typeof value === 'object' && !Array.isArray(value) ? (value as CrossReplace) : { default: value as StepRange | undefined };
}

/** The defaults of the paper's notebooks. */
export const P2P_DEFAULTS = { crossReplace: 0.8, selfReplace: 0.4 } as const;

export interface PromptToPromptPlan {
  source: string;
  target: string;
  kind: 'reweight' | 'replace' | 'refine';
  /** 75-token chunks of every context (source, edit, negative): 77·chunks token positions. */
  chunks: number;
  promptSyntax: boolean;
  tokenMap: TokenMap;
  /** [tokens]: the factor on each edited token's cross-attention. */
  equalizer: Float32Array;
  /** Each re-weighted word's factor and token positions in the edited prompt. */
  reweighted: { word: string; factor: number; positions: number[] }[];
  /** [steps + 1][tokens]: the reference's α table (one row per UNet call, plus one). */
  crossAlphas: Float32Array[];
  /** UNet calls [start, end) whose self-attention is replaced. */
  selfSteps: readonly [number, number];
}

/** Resolves and checks an edit for a run of `steps` UNet calls; throws a one-line error on bad words. */
export function planPromptToPrompt(tokenizer: ClipTokenizer, options: PromptToPromptOptions, steps: number): PromptToPromptPlan {
  const { source } = options;
  const target = options.target ?? source;
  const promptSyntax = options.promptSyntax !== false;
  const read = planPromptChunks(tokenizer, [source, target, options.negativePrompt ?? ''], options);
  const { chunks } = read;
  const edited = { prompt: target, tokens: read.tokens[1]!, chunks };
  const tokens = chunks * tokenizer.modelMaxLength;
  const kind = options.refine ? 'refine' : target === source ? 'reweight' : 'replace';
  const reading = { promptSyntax, chunks };
  const tokenMap = kind === 'refine' ? refinementMap(tokenizer, source, target, reading) : kind === 'replace' ? replacementMap(tokenizer, source, target, reading) : identityMap(tokens);

  const equalizer = new Float32Array(tokens).fill(1);
  const reweighted = Object.entries(options.reweight ?? {}).map(([word, factor]) => {
    if (!Number.isFinite(factor)) throw new Error(`reweight ${word}: the factor must be a finite number, got ${factor}`);
    const positions = wordTokens(tokenizer, edited, word, 'reweight');
    for (const i of positions) equalizer[i] = factor;
    return { word, factor, positions };
  });

  const cross = asCrossReplace(options.crossReplace);
  const rows = steps + 1;
  const crossAlphas = Array.from({ length: rows }, () => new Float32Array(tokens));
  const fill = (range: StepRange, indices: readonly number[] | undefined, what: string) => {
    const [start, end] = stepBounds(range, rows, what);
    for (let s = 0; s < rows; s++) {
      const value = s >= start && s < end ? 1 : 0;
      if (indices) for (const i of indices) crossAlphas[s][i] = value;
      else crossAlphas[s].fill(value);
    }
  };
  fill(cross.default ?? P2P_DEFAULTS.crossReplace, undefined, 'cross-replace');
  for (const [word, range] of Object.entries(cross.words ?? {})) fill(range, wordTokens(tokenizer, edited, word, 'cross-replace'), `cross-replace ${word}`);

  const selfSteps = stepBounds(options.selfReplace ?? P2P_DEFAULTS.selfReplace, steps, 'self-replace');
  return { source, target, kind, chunks, promptSyntax, tokenMap, equalizer, reweighted, crossAlphas, selfSteps };
}

/** The controller's graph inputs for UNet call `step`. */
export function promptToPromptFeeds(plan: PromptToPromptPlan, step: number): Feeds {
  const { tokens } = plan.tokenMap;
  const [start, end] = plan.selfSteps;
  return {
    [P2P_INPUTS.crossAlpha]: { data: plan.crossAlphas[Math.min(step, plan.crossAlphas.length - 1)], shape: [tokens] },
    [P2P_INPUTS.selfReplace]: { data: Float32Array.of(step >= start && step < end ? 1 : 0), shape: [1] },
    [P2P_INPUTS.tokenMap]: { data: plan.tokenMap.matrix, shape: [tokens, tokens] },
    [P2P_INPUTS.tokenAlphas]: { data: plan.tokenMap.alphas, shape: [tokens] },
    [P2P_INPUTS.equalizer]: { data: plan.equalizer, shape: [tokens] },
  };
}

/** Token positions of `word` in a read prompt, or a one-line error naming the option that asked. */
export function wordTokens(tokenizer: ClipTokenizer, read: { prompt: string; tokens: PromptTokens; chunks: number }, word: string, option: string): number[] {
  const found = findWordPositions(tokenizer, read.tokens, word, read.chunks);
  if (!found.length) throw new Error(`${option}: "${word}" is not a word of the prompt "${read.prompt}"`);
  return found;
}

/** [start, end) as whole steps, truncating fractions of `count` as the reference does. */
function stepBounds(range: StepRange, count: number, what: string): [number, number] {
  const [from, to] = typeof range === 'number' ? [0, range] : range;
  if (!(from >= 0 && to <= 1 && from <= to)) throw new Error(`${what}: expected a fraction of the steps in [0, 1], got ${typeof range === 'number' ? range : `[${range.join(', ')}]`}`);
  return [Math.trunc(from * count), Math.trunc(to * count)];
}
