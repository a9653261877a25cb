// Prompt-to-Prompt and heat maps on weighted and long prompts: words are those of the plain text
// (brackets and weights are not words), and map to token positions in every 77-token chunk.

import { beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { crossAttentionMaps } from '../../src/pipelines/attention-maps.ts';
import { edit } from '../../src/pipelines/edit.ts';
import { invertImage, reconstruct } from '../../src/pipelines/inversion.ts';
import { createImage } from '../../src/io/image.ts';
import { LocalBlend } from '../../src/pipelines/local-blend.ts';
import { planPromptToPrompt } from '../../src/pipelines/prompt-to-prompt.ts';
import { refinementMap, replacementMap } from '../../src/pipelines/seq-aligner.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { ClipTokenizer } from '../../src/tokenizers/clip.ts';
import { TINY_SD } from '../fixtures.ts';

const tokenizer = ClipTokenizer.fromFolder(join(TINY_SD, 'tokenizer'));
// 80 one-token words, then the subject: "cat" is token 81, position 77 + 1 + 5 of chunk 2.
const FILLER = 'red '.repeat(80);
const LONG_CAT = `${FILLER}a cat riding a bike`;
const LONG_DOG = `${FILLER}a dog riding a bike`;
const CAT_POSITION = 77 + 1 + 6;

/** Source position each edited position takes (−1: none, or a share). */
function partners(map: { matrix: Float32Array; tokens: number }): number[] {
  const { matrix, tokens } = map;
  return Array.from({ length: tokens }, (_, n) => {
    const from = [];
    for (let w = 0; w < tokens; w++) if (matrix[w * tokens + n] === 1) from.push(w);
    return from.length === 1 ? from[0]! : -1;
  });
}

describe('word alignment on weighted and long prompts', () => {
  it('a word swap between weighted prompts is the swap between their plain texts', () => {
    const weighted = replacementMap(tokenizer, 'a (cat:1.3) riding [a] ((bike))', 'a (dog:0.7) riding a bike');
    const plain = replacementMap(tokenizer, 'a cat riding a bike', 'a dog riding a bike');
    expect(weighted.matrix).toEqual(plain.matrix);
    // Read literally, the brackets are words and tokens of their own.
    expect(() => replacementMap(tokenizer, 'a (cat:1.3) riding a bike', 'a dog riding a bike', { promptSyntax: false })).toThrow(/same number of tokens/);
  });

  it('a word swap in the second chunk maps that chunk\'s positions', () => {
    const map = replacementMap(tokenizer, LONG_CAT, LONG_DOG);
    expect(map.tokens).toBe(154);
    const from = partners(map);
    expect(from.every((w, n) => w === n)).toBe(true); // one token each: the swap keeps positions
    expect(tokenizer.encode(LONG_CAT)[CAT_POSITION - 77 - 1 + 75]).toBe(tokenizer.encode('cat')[0]);
  });

  it('a refinement across chunks: a word added in chunk 2 has no source; later tokens shift by one', () => {
    const target = `${FILLER}a fluffy cat riding a bike`;
    const map = refinementMap(tokenizer, LONG_CAT, target);
    expect(map.tokens).toBe(154);
    const from = partners(map);
    const fluffy = CAT_POSITION; // "fluffy" takes the cat's old position
    expect(map.alphas[fluffy]).toBe(0);
    expect(from[fluffy + 1]).toBe(CAT_POSITION); // the edited "cat" takes the source's cat
    expect(from[77]).toBe(77); // chunk 2's BOS
    expect(from.slice(0, 77).every((w, n) => w === n)).toBe(true);
  });

  it('re-weighting and cross-replace schedules find words in any chunk and inside brackets', () => {
    const plan = planPromptToPrompt(tokenizer, { source: LONG_CAT, reweight: { cat: 3 }, crossReplace: { default: 1, words: { bike: 0.5 } } }, 10);
    expect(plan.chunks).toBe(2);
    expect(plan.equalizer).toHaveLength(154);
    expect([...plan.equalizer.entries()].filter(([, v]) => v !== 1)).toEqual([[CAT_POSITION, 3]]);
    const bike = CAT_POSITION + 3;
    // 0.5 of 11 rows: rows 0–4 take the source's maps.
    expect(plan.crossAlphas[4]![bike]).toBe(1);
    expect(plan.crossAlphas[5]![bike]).toBe(0);
    expect(plan.crossAlphas[5]![CAT_POSITION]).toBe(1);
    const weighted = planPromptToPrompt(tokenizer, { source: 'a (smiling:1.2) [cat]', reweight: { smiling: 2, cat: 0.5 } }, 10);
    expect(Array.from(weighted.equalizer.subarray(0, 5))).toEqual([1, 1, 2, 0.5, 1]); // BOS, a, smiling, cat, EOS
    expect(() => planPromptToPrompt(tokenizer, { source: 'a (smiling:1.2) cat', reweight: { '(smiling:1.2)': 2 } }, 10)).toThrow(/is not a word/);
  });

  it('a long negative prompt lengthens every context of the edit', () => {
    expect(planPromptToPrompt(tokenizer, { source: 'a cat', negativePrompt: FILLER }, 10).chunks).toBe(2);
    expect(planPromptToPrompt(tokenizer, { source: 'a cat', negativePrompt: FILLER, maxChunks: 1 }, 10).chunks).toBe(1);
  });

  it('local blend finds its words in the second chunk', () => {
    const blend = new LocalBlend(tokenizer, [LONG_CAT, LONG_DOG], { words: ['cat', 'dog'] });
    expect(blend.tokens).toEqual([[CAT_POSITION], [CAT_POSITION]]);
  });
});

describe('heat maps and edits run on long prompts (tiny-sd)', () => {
  let sd: StableDiffusion;
  beforeAll(() => {
    sd = StableDiffusion.load(TINY_SD);
  });
  const run = { width: 128, height: 128, steps: 2, seed: 3 };

  it('one heat map per token of each chunk, at its own position', async () => {
    const prompt = `${FILLER}a (cat:1.4) BREAK riding a bike`;
    const result = await crossAttentionMaps(sd, { prompt, ...run });
    const words = [...new Array(80).fill('red'), 'a', 'cat', 'riding', 'a', 'bike'];
    expect(result.tokens.map((t) => t.token)).toEqual(words);
    // Red 76 opens chunk 2 (after its BOS at 77); "riding" opens chunk 3 after the BREAK.
    expect(result.tokens.map((t) => t.position).slice(74, 83)).toEqual([75, 78, 79, 80, 81, 82, 83, CAT_POSITION, 155]);
    for (const t of result.tokens) expect(t.map.some((v) => v > 0)).toBe(true);
  });

  it('a re-weighting of 1 on a long prompt leaves the edit equal to the source; re-weighting a chunk-2 word changes it', async () => {
    const same = await edit(sd, { source: LONG_CAT, reweight: { cat: 1 }, ...run, attentionMaps: true });
    const half = same.latents.length / 2;
    let diff = 0;
    for (let i = 0; i < half; i++) diff = Math.max(diff, Math.abs(same.latents[i]! - same.latents[half + i]!));
    expect(diff).toBeLessThan(1e-5);
    expect(same.attention!.tokens).toHaveLength(85);
    expect(same.attention!.tokens[81]!.position).toBe(CAT_POSITION);

    const stressed = await edit(sd, { source: LONG_CAT, reweight: { cat: 4 }, crossReplace: 1, ...run });
    let changed = 0;
    for (let i = 0; i < half; i++) changed = Math.max(changed, Math.abs(stressed.latents[i]! - stressed.latents[half + i]!));
    expect(changed).toBeGreaterThan(1e-4);
  });

  it('a real picture inverted with a long prompt: null-text embeddings of 2 chunks, and the edit samples its source row with them', async () => {
    const image = createImage(128, 128);
    image.data.forEach((_, i) => (image.data[i] = (i % 128) / 128));
    const inversion = await invertImage(sd, { prompt: LONG_CAT, image, steps: 2, guidance: 7.5, nullText: { innerSteps: 1, learningRate: 0.1 } });
    expect(inversion.uncondEmbeddings[0]).toHaveLength(154 * sd.contextShape[1]);
    const edited = await edit(sd, { inversion, source: LONG_CAT, target: LONG_DOG, steps: 2, guidance: 7.5 });
    const source = await reconstruct(sd, inversion);
    let worst = 0;
    source.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - edited.latents[i]!))));
    expect(worst).toBeLessThan(1e-4);
    // An inversion made for one chunk cannot serve an edit whose prompts need two.
    const short = await invertImage(sd, { prompt: 'a cat', image, steps: 2, guidance: 7.5, nullText: false });
    await expect(edit(sd, { inversion: short, source: 'a cat', target: LONG_DOG, refine: true, steps: 2, guidance: 7.5 })).rejects.toThrow(/invert again/);
  });
});
