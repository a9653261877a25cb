// AUTOMATIC1111's emphasis syntax and the 75-token chunk layout against diffusers' long-prompt-
// weighting community pipeline (reference-2, case m: lpw_parse): the parser's output for 10 strings
// exactly, and the token ids, weights and chunk inputs at 75/76/150/151/300 tokens exactly.

import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { ClipTokenizer } from '../../src/tokenizers/clip.ts';
import { hasPromptSyntax, parsePromptAttention, plainPromptText } from '../../src/tokenizers/prompt-syntax.ts';
import { BREAK_FILL, chunksNeeded, layoutChunks, promptTokens, tokenPosition } from '../../src/tokenizers/prompt-tokens.ts';
import { TINY_SD, referenceCase } from '../fixtures.ts';

interface LpwParseCase {
  file: string;
  parse_prompt_attention: Record<string, [string, number][]>;
  boundary_prompts: Record<string, { n_tokens_without_bos_eos: number; n_chunks: number; embedding_length: number }>;
}

const tokenizer = ClipTokenizer.fromFolder(join(TINY_SD, 'tokenizer'));
const asPairs = (text: string) => parsePromptAttention(text).map((f) => ('text' in f ? [f.text, f.weight] : ['BREAK', -1]));

describe('prompt syntax parser', () => {
  const ref = referenceCase('lpw_parse') as unknown as LpwParseCase;

  it("gives lpw's parse_prompt_attention result for its 10 strings, weights to the last bit", () => {
    const strings = Object.keys(ref.parse_prompt_attention);
    expect(strings).toHaveLength(10);
    for (const text of strings) expect(asPairs(text), text).toEqual(ref.parse_prompt_attention[text]);
  });

  it('cuts at BREAK (A1111), which is no text and takes no weight', () => {
    expect(asPairs('a cat BREAK (a dog) BREAKFAST')).toEqual([['a cat', 1], ['BREAK', -1], ['', 1], ['a dog', 1.1], [' BREAKFAST', 1]]);
    expect(asPairs('(a BREAK b)')).toEqual([['a', 1.1], ['BREAK', -1], ['b', 1.1]]);
  });

  it('a weight that does not read as a number stays text; stray closers are text', () => {
    expect(asPairs('(x:1.2.3)')).toEqual([['x:1.2.3)', 1.1]]);
    expect(asPairs('a) b] :c')).toEqual([['a) b] :c', 1]]);
  });

  it('knows a prompt without syntax', () => {
    expect(hasPromptSyntax('a photo of a cat, 4k: sharp')).toBe(false);
    expect(hasPromptSyntax('a (cat)')).toBe(true);
    expect(hasPromptSyntax('\\(cat\\)')).toBe(true);
    expect(hasPromptSyntax('a BREAK b')).toBe(true);
    expect(plainPromptText('a (cat:1.3) on [a] ((mat))')).toBe('a cat on a mat');
  });
});

describe('weighted tokens in 75-token chunks', () => {
  const ref = referenceCase('lpw_parse') as unknown as LpwParseCase;
  const tensors = readSafetensors(ref.file);
  const get = (name: string) => tensors.get(name)!;

  for (const [key, expected] of Object.entries(ref.boundary_prompts)) {
    it(`${key}: token ids, weights and each chunk's input ids as lpw lays them out (max 3 chunks)`, () => {
      const count = Number(key.slice('cat_x'.length));
      const t = promptTokens(tokenizer, 'cat '.repeat(count));
      const chunks = chunksNeeded(tokenizer, t, 3);
      expect(chunks).toBe(expected.n_chunks);
      expect(Math.min(t.ids.length, 225)).toBe(expected.n_tokens_without_bos_eos);
      const layout = layoutChunks(tokenizer, t, chunks);
      expect(layout.dropped).toBe(count - expected.n_tokens_without_bos_eos);
      expect(Array.from(layout.ids)).toEqual(Array.from(get(`${key}_chunk_input_ids`).data as BigInt64Array, Number));
      expect(layout.weights).toEqual(get(`${key}_weights`).data);
      // lpw's padded row: BOS + tokens + padding + EOS, which the chunks cut into windows.
      const padded = Array.from(get(`${key}_padded_tokens`).data as BigInt64Array, Number);
      expect(padded.slice(1, 1 + expected.n_tokens_without_bos_eos)).toEqual(t.ids.slice(0, expected.n_tokens_without_bos_eos));
    });
  }

  it('every syntax fragment is tokenized on its own and its tokens take its weight', () => {
    const t = promptTokens(tokenizer, 'a (cat:1.3) on [a] ((mat))s');
    expect(t.ids).toEqual([...tokenizer.encode('a'), ...tokenizer.encode('cat'), ...tokenizer.encode(' on '), ...tokenizer.encode('a'), ...tokenizer.encode('mat'), ...tokenizer.encode('s')]);
    expect(t.weights).toEqual([1, 1.3, 1, 1 / 1.1, 1.1 * 1.1, 1]);
    // The syntax characters are no words; "((mat))s" is the one word "mats", spelled by two tokens.
    expect(t.words).toEqual(['a', 'cat', 'on', 'a', 'mats']);
    expect(t.wordOf).toEqual([0, 1, 2, 3, 4, 4]);
    expect(promptTokens(tokenizer, 'a (cat:1.3)', { syntax: false }).ids).toEqual(tokenizer.encode('a (cat:1.3)'));
  });

  it('BREAK ends the chunk: EOS and padding after the tokens so far, the rest starts a new chunk', () => {
    const t = promptTokens(tokenizer, 'a red cat BREAK a blue dog');
    expect(t.ids.length).toBe(75 + 3);
    expect(t.ids.slice(3, 75).every((id) => id === BREAK_FILL)).toBe(true);
    expect(t.words).toEqual(['a', 'red', 'cat', 'a', 'blue', 'dog']);
    const layout = layoutChunks(tokenizer, t, chunksNeeded(tokenizer, t));
    const { bosTokenId: bos, eosTokenId: eos, padTokenId: pad } = tokenizer;
    expect(Array.from(layout.ids.subarray(0, 6))).toEqual([bos, ...tokenizer.encode('a red cat'), eos, pad]);
    expect(Array.from(layout.ids.subarray(77, 82))).toEqual([bos, ...tokenizer.encode('a blue dog'), eos]);
    expect(tokenPosition(tokenizer, 75)).toBe(78);
    // A BREAK right after a full chunk adds no empty one; two in a row do.
    expect(promptTokens(tokenizer, `${'cat '.repeat(75)}BREAK dog`).ids.length).toBe(76);
    expect(promptTokens(tokenizer, 'cat BREAK BREAK dog').ids.length).toBe(151);
  });

  it("lays out a chunk as the tokenizer pads a prompt, SD 2.x's pad token '!' included", () => {
    const sd2 = ClipTokenizer.fromFolder(join(TINY_SD, 'tokenizer'), { padToken: '!' });
    for (const prompt of ['a photo of a cat', '']) {
      const layout = layoutChunks(sd2, promptTokens(sd2, prompt), 1);
      expect(Array.from(layout.ids)).toEqual(Array.from(sd2.call([prompt]).inputIds[0]!));
    }
    const two = layoutChunks(sd2, promptTokens(sd2, 'cat '.repeat(80)), 2);
    expect(Array.from(two.ids.subarray(77, 84))).toEqual([sd2.bosTokenId, ...new Array(5).fill(sd2.encode('cat')[0]), sd2.eosTokenId]);
    expect(two.ids[84]).toBe(sd2.padTokenId);
    expect(sd2.padTokenId).not.toBe(sd2.eosTokenId);
  });
});
