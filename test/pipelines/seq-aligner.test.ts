// Token maps for Prompt-to-Prompt: word swaps pair the swapped words' tokens, refinements align the
// two token sequences and leave added words to themselves; bad edits are refused in words.

import { beforeAll, describe, expect, it } from 'vitest';
import { planPromptToPrompt } from '../../src/pipelines/prompt-to-prompt.ts';
import { alignTokens, identityMap, refinementMap, replacementMap } from '../../src/pipelines/seq-aligner.ts';
import { ClipTokenizer } from '../../src/tokenizers/clip.ts';
import { TINY_SD } from '../fixtures.ts';
import { join } from 'node:path';

/** The source position each edited token takes its map from (−1: none, its own map kept). */
function partners(map: { matrix: Float32Array; alphas: Float32Array; tokens: number }, count: number): number[] {
  return Array.from({ length: count }, (_, n) => {
    if (!map.alphas[n]) return -1;
    const from: number[] = [];
    for (let w = 0; w < map.tokens; w++) if (map.matrix[w * map.tokens + n]) from.push(w);
    expect(from).toHaveLength(1);
    return from[0];
  });
}

describe('seq-aligner', () => {
  let tokenizer: ClipTokenizer;
  beforeAll(() => {
    tokenizer = ClipTokenizer.fromFolder(join(TINY_SD, 'tokenizer'));
  });

  it('a word swap maps every token to its own position, the swapped word onto the source word', () => {
    const map = replacementMap(tokenizer, 'a cat riding a bike', 'a dog riding a bike');
    expect(partners(map, 77)).toEqual(Array.from({ length: 77 }, (_, i) => i));
  });

  it('a swapped word of another token count shares the maps out as the reference does, when the totals still agree', () => {
    // "hippopotamus" is 3 tokens: cat (1) → hippopotamus (3) and back keep 7 tokens in all.
    const map = replacementMap(tokenizer, 'a cat on a hippopotamus', 'a hippopotamus on a cat');
    const at = (w: number, n: number) => map.matrix[w * 77 + n];
    for (const n of [2, 3, 4]) expect(at(2, n)).toBeCloseTo(1 / 3, 6); // source "cat" spread over 3 tokens
    for (const w of [5, 6, 7]) expect(at(w, 7)).toBe(1); // source "hippopotamus" summed into "cat"
    expect([at(0, 0), at(1, 1), at(3, 5), at(4, 6), at(8, 8), at(76, 76)]).toEqual([1, 1, 1, 1, 1, 1]);
  });

  it('refinement aligns shared tokens and leaves added words their own maps', () => {
    const source = 'a cat riding a bike';
    const target = 'a fluffy cat riding a red bike';
    const map = refinementMap(tokenizer, source, target);
    // target: BOS a fluffy cat riding a red bike EOS; source: BOS a cat riding a bike EOS
    expect(partners(map, 9)).toEqual([0, 1, -1, 2, 3, 4, -1, 5, 6]);
    expect(Array.from(map.alphas.subarray(0, 9))).toEqual([1, 1, 0, 1, 1, 1, 0, 1, 1]);
    // Past the edited prompt, padding takes the source's padding at the same position.
    expect(partners(map, 77).slice(9)).toEqual(Array.from({ length: 68 }, (_, i) => 9 + i));
  });

  it('alignment prefers the reference tie-breaking (gaps before the diagonal)', () => {
    expect(alignTokens([1, 2, 3], [1, 2, 3])).toEqual([0, 1, 2]);
    expect(alignTokens([1, 3], [1, 2, 3])).toEqual([0, -1, 1]);
    expect(alignTokens([1, 2, 3], [1, 3])).toEqual([0, 2]);
  });

  it('refuses word swaps whose words or tokens do not pair up', () => {
    expect(() => replacementMap(tokenizer, 'a cat riding a bike', 'a cat riding a red bike')).toThrow(/same number of words/);
    expect(() => replacementMap(tokenizer, 'a cat riding a bike', 'a hippopotamus riding a bike')).toThrow(/same number of tokens/);
  });

  it('plans the reference step schedules: α rows int(f·(steps+1)), self steps int(f·steps), per-word overrides', () => {
    const plan = planPromptToPrompt(tokenizer, { source: 'a cat riding a bike', target: 'a dog riding a bike', crossReplace: { default: 1.0, words: { dog: 0.4 } }, selfReplace: 0.4 }, 10);
    expect(plan.kind).toBe('replace');
    expect(plan.crossAlphas).toHaveLength(11);
    expect(plan.crossAlphas.map((row) => row[2])).toEqual([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]); // "dog"
    expect(plan.crossAlphas.every((row) => row[1] === 1 && row[76] === 1)).toBe(true);
    expect(plan.selfSteps).toEqual([0, 4]);
    const reweight = planPromptToPrompt(tokenizer, { source: 'a smiling cat', reweight: { smiling: 5 } }, 10);
    expect(reweight.kind).toBe('reweight');
    expect(Array.from(reweight.equalizer.subarray(0, 4))).toEqual([1, 1, 5, 1]);
    expect(reweight.tokenMap.matrix).toEqual(identityMap(77).matrix);
  });

  it('names the word and the option when a word is not in the prompt', () => {
    expect(() => planPromptToPrompt(tokenizer, { source: 'a cat', reweight: { dog: 2 } }, 10)).toThrow('reweight: "dog" is not a word of the prompt "a cat"');
    expect(() => planPromptToPrompt(tokenizer, { source: 'a cat', target: 'a dog', crossReplace: { words: { cat: 0.5 } } }, 10)).toThrow(/cross-replace: "cat"/);
    expect(() => planPromptToPrompt(tokenizer, { source: 'a cat', selfReplace: 1.5 }, 10)).toThrow(/self-replace/);
  });
});
