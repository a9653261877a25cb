import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { ClipTokenizer, promptWords } from '../../src/tokenizers/clip.ts';
import { referenceCase, TINY_SD } from '../fixtures.ts';

const TOKENIZER_DIR = join(TINY_SD, 'tokenizer');
const silent = (): void => {};

/** Rows of an [N, 77] int64 reference tensor as plain numbers. */
function referenceRows(file: string, name: string): number[][] {
  const tensor = readSafetensors(file).get(name);
  if (!tensor) throw new Error(`${file} has no tensor ${name}`);
  const [rows, cols] = tensor.shape as [number, number];
  const data = tensor.data as BigInt64Array;
  return Array.from({ length: rows }, (_, r) => Array.from(data.subarray(r * cols, (r + 1) * cols), Number));
}

const tokenization = referenceCase('tokenization');
const prompts = tokenization.prompts as string[];
const referenceTokens = tokenization.tokens_hf as string[][];
const referenceIds = referenceRows(tokenization.file, 'input_ids');

describe('ClipTokenizer against the transformers reference (slow CLIPTokenizer, no ftfy)', () => {
  const tokenizer = ClipTokenizer.fromFolder(TOKENIZER_DIR, { onWarning: silent });

  it('loads the real CLIP vocabulary with SD-1.x special tokens', () => {
    expect(tokenizer.size).toBe(49408);
    expect(tokenizer.bosTokenId).toBe(49406);
    expect(tokenizer.eosTokenId).toBe(49407);
    expect(tokenizer.padTokenId).toBe(49407);
    expect(tokenizer.modelMaxLength).toBe(77);
  });

  it.each(prompts.map((prompt, index) => [index, prompt] as const))('prompt %i %j: all 77 input_ids', (index, prompt) => {
    const { inputIds } = tokenizer.call([prompt]);
    expect(Array.from(inputIds[0]!)).toEqual(referenceIds[index]);
    expect(tokenizer.tokenize(prompt)).toEqual(referenceTokens[index]);
  });

  it('tokenizes the whole batch in one call', () => {
    const { inputIds, truncated } = tokenizer.call(prompts);
    expect(inputIds.map((row) => Array.from(row))).toEqual(referenceIds);
    expect(truncated.filter(Boolean)).toHaveLength(2);
  });

  it('encode gives the untruncated ids without BOS/EOS', () => {
    const untruncated = tokenization.untruncated_input_ids_hf as number[][];
    prompts.forEach((prompt, i) => expect([49406, ...tokenizer.encode(prompt), 49407]).toEqual(untruncated[i]));
  });

  it('maps special-token strings typed in a prompt to their ids', () => {
    expect(tokenizer.encode('<|startoftext|> special tokens <|endoftext|>')).toEqual([49406, 1689, 23562, 49407]);
    expect(tokenizer.encode('cat<|endoftext|>dog')).toEqual([2368, 49407, 1929]);
    // Case matters: only the exact string is special.
    expect(tokenizer.encode('<|ENDOFTEXT|>')).not.toContain(49407);
  });

  it('decodes ids back to normalised text', () => {
    expect(tokenizer.decode(tokenizer.encode('A Photo of a CAT, highly detailed'))).toBe('a photo of a cat , highly detailed');
    expect(tokenizer.decode(tokenizer.encode('日本語 🐱'))).toBe('日 本 語 🐱');
  });
});

describe('truncation', () => {
  // Prompt 26 is exactly 75 tokens (fits); 27 is 76 and 28 is 84.
  const overLong = [27, 28];

  it('keeps BOS + the first 75 tokens + EOS and reports what was dropped', () => {
    const warnings: string[] = [];
    const tokenizer = ClipTokenizer.fromFolder(TOKENIZER_DIR, { onWarning: (message) => warnings.push(message) });
    const { inputIds, truncated } = tokenizer.call(prompts);
    expect(truncated.flatMap((t, i) => (t ? [i] : []))).toEqual(overLong);
    for (const i of overLong) {
      const row = Array.from(inputIds[i]!);
      expect(row[0]).toBe(49406);
      expect(row.slice(1, 76)).toEqual(tokenizer.encode(prompts[i]!).slice(0, 75));
      expect(row[76]).toBe(49407);
    }
    expect(warnings).toEqual([
      "prompt truncated to 77 tokens: dropped 'cat'",
      "prompt truncated to 77 tokens: dropped 'keeps going a very long prompt that keeps going'",
    ]);
  });

  it('does not truncate exactly 75 tokens', () => {
    const tokenizer = ClipTokenizer.fromFolder(TOKENIZER_DIR, { onWarning: silent });
    expect(tokenizer.encode(prompts[26]!)).toHaveLength(75);
    const { inputIds, truncated } = tokenizer.call([prompts[26]!]);
    expect(truncated).toEqual([false]);
    expect(inputIds[0]![75]).toBe(2368);
    expect(inputIds[0]![76]).toBe(49407);
  });

  it('honours maxLength and a per-call warning hook', () => {
    const tokenizer = ClipTokenizer.fromFolder(TOKENIZER_DIR, {
      onWarning: () => {
        throw new Error('the per-call hook should win');
      },
    });
    const warnings: string[] = [];
    const { inputIds, truncated } = tokenizer.call(['a photo of a cat on a mat', 'a cat'], {
      maxLength: 6,
      onWarning: (message) => warnings.push(message),
    });
    expect(Array.from(inputIds[0]!)).toEqual([49406, 320, 1125, 539, 320, 49407]);
    expect(Array.from(inputIds[1]!)).toEqual([49406, 320, 2368, 49407, 49407, 49407]);
    expect(truncated).toEqual([true, false]);
    expect(warnings).toEqual(["prompt truncated to 6 tokens: dropped 'cat on a mat'"]);
    expect(() => tokenizer.call(['x'], { maxLength: 1 })).toThrow(/maxLength/);
  });

  it('warns through console.warn by default', () => {
    const tokenizer = ClipTokenizer.fromFolder(TOKENIZER_DIR);
    const original = console.warn;
    const seen: unknown[] = [];
    console.warn = (message: unknown) => seen.push(message);
    try {
      tokenizer.call([prompts[28]!]);
    } finally {
      console.warn = original;
    }
    expect(seen).toHaveLength(1);
    expect(String(seen[0])).toMatch(/^warning: prompt truncated to 77 tokens: dropped '/);
  });

  it('quotes only the first words of a long dropped tail, with its length in tokens', () => {
    const warnings: string[] = [];
    const tokenizer = ClipTokenizer.fromFolder(TOKENIZER_DIR, { onWarning: (message) => warnings.push(message) });
    tokenizer.call([Array.from({ length: 500 }, (_, i) => (i % 2 ? 'apple' : 'red')).join(' ')]);
    expect(warnings).toEqual([`prompt truncated to 77 tokens: dropped 425 tokens, '${'apple red '.repeat(6).trim()} …'`]);
  });
});

describe('added tokens (Textual Inversion)', () => {
  it('gives <cat-toy> id 49408 and matches the textual-inversion reference input_ids', () => {
    const textualInversion = referenceCase('train_textual_inversion');
    const tokenizer = ClipTokenizer.fromFolder(TOKENIZER_DIR, { onWarning: silent });
    expect(tokenizer.addToken('<cat-toy>')).toBe(49408);
    expect(tokenizer.size).toBe(49409);
    const { inputIds } = tokenizer.call(textualInversion.prompts as string[]);
    expect(inputIds.map((row) => Array.from(row))).toEqual(referenceRows(textualInversion.file, 'input_ids'));
    expect(tokenizer.encode('toy')).toEqual([textualInversion.initializer_id]);
  });

  it('matches the added token whole, before normalisation, even inside other text', () => {
    const tokenizer = ClipTokenizer.fromFolder(TOKENIZER_DIR, { onWarning: silent });
    const id = tokenizer.addToken('<cat-toy>');
    expect(tokenizer.tokenize('A <cat-toy>, cat-toy')).toEqual(['a</w>', '<cat-toy>', ',</w>', 'cat</w>', '-</w>', 'toy</w>']);
    expect(tokenizer.encode('x<cat-toy>y')).toEqual([343, id, 344]);
    expect(tokenizer.decode(tokenizer.encode('a photo of a <cat-toy>'))).toBe('a photo of a <cat-toy>');
  });

  it('is idempotent, numbers further tokens in turn, and refuses tokens BPE already produces', () => {
    const tokenizer = ClipTokenizer.fromFolder(TOKENIZER_DIR, { onWarning: silent });
    expect(tokenizer.addToken('<cat-toy>')).toBe(49408);
    expect(tokenizer.addToken('<cat-toy>')).toBe(49408);
    expect(tokenizer.addToken('<dog-toy>')).toBe(49409);
    expect(tokenizer.addToken('<|endoftext|>')).toBe(49407);
    expect(() => tokenizer.addToken('cat</w>')).toThrow(/already in the vocabulary \(id 2368\)/);
    expect(() => tokenizer.addToken(' ')).toThrow(/empty/);
  });

  it('reads added_tokens.json from the tokenizer folder', () => {
    const dir = copyTokenizer({ 'added_tokens.json': JSON.stringify({ '<cat-toy>': 49408 }) });
    try {
      const tokenizer = ClipTokenizer.fromFolder(dir, { onWarning: silent });
      expect(tokenizer.size).toBe(49409);
      expect(tokenizer.encode('a <cat-toy>')).toEqual([320, 49408]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('wordTokenIndices', () => {
  const tokenizer = ClipTokenizer.fromFolder(TOKENIZER_DIR, { onWarning: silent });

  it('finds a word in the padded sequence, BOS at 0', () => {
    expect(tokenizer.wordTokenIndices('a cat riding a bike', 'cat')).toEqual([2]);
    expect(tokenizer.wordTokenIndices('a dog riding a bike', 'dog')).toEqual([2]);
    expect(tokenizer.wordTokenIndices('a smiling cat riding a bike', 'smiling')).toEqual([2]);
    expect(tokenizer.wordTokenIndices('a cat riding a bike', 'a')).toEqual([1, 4]);
    expect(tokenizer.wordTokenIndices('a cat riding a bike', 'horse')).toEqual([]);
  });

  it('covers every BPE piece of a multi-token word, and only whole words', () => {
    expect(tokenizer.tokenize('tab and newline')).toEqual(['tab</w>', 'and</w>', 'new', 'line</w>']);
    expect(tokenizer.wordTokenIndices('tab and newline', 'newline')).toEqual([3, 4]);
    expect(tokenizer.wordTokenIndices('tab and newline', 'line')).toEqual([]);
    expect(tokenizer.wordTokenIndices('tab and newline', 'new')).toEqual([]);
  });

  it('normalises the word like the prompt, and accepts phrases', () => {
    expect(tokenizer.wordTokenIndices('A Café, at night', 'cafe')).toEqual([2]);
    expect(tokenizer.wordTokenIndices('a fluffy cat riding a red bike', 'red bike')).toEqual([6, 7]);
  });

  it('takes a word index as Prompt-to-Prompt numbers words', () => {
    const prompt = 'a fluffy cat, riding a newline bike';
    expect(promptWords(prompt)).toEqual(['a', 'fluffy', 'cat,', 'riding', 'a', 'newline', 'bike']);
    expect(tokenizer.wordTokenIndices(prompt, 2)).toEqual([3, 4]);
    expect(tokenizer.wordTokenIndices(prompt, 5)).toEqual([7, 8]);
    expect(tokenizer.wordTokenIndices(prompt, 6)).toEqual([9]);
    expect(() => tokenizer.wordTokenIndices(prompt, 7)).toThrow(RangeError);
  });

  it('finds added tokens and leaves out positions lost to truncation', () => {
    const withToken = ClipTokenizer.fromFolder(TOKENIZER_DIR, { onWarning: silent });
    withToken.addToken('<cat-toy>');
    expect(withToken.wordTokenIndices('a photo of a <cat-toy>', '<cat-toy>')).toEqual([5]);
    const cats = Array(80).fill('cat').join(' ');
    expect(tokenizer.wordTokenIndices(cats, 'cat')).toEqual(Array.from({ length: 75 }, (_, i) => i + 1));
    expect(tokenizer.wordTokenIndices(cats, 79)).toEqual([]);
  });
});

describe('loading', () => {
  let sd2Dir: string;
  beforeAll(() => {
    sd2Dir = copyTokenizer({
      'tokenizer_config.json': JSON.stringify({ model_max_length: 77, pad_token: '!' }),
      'special_tokens_map.json': JSON.stringify({
        bos_token: { content: '<|startoftext|>' },
        eos_token: { content: '<|endoftext|>' },
        pad_token: '!',
        unk_token: { content: '<|endoftext|>' },
      }),
    });
  });
  afterAll(() => rmSync(sd2Dir, { recursive: true, force: true }));

  it('pads with "!" = 0 for SD-2 style tokenizers', () => {
    const tokenizer = ClipTokenizer.fromFolder(sd2Dir, { onWarning: silent });
    expect(tokenizer.padTokenId).toBe(0);
    const row = Array.from(tokenizer.call(['a photo of a cat']).inputIds[0]!);
    expect(row.slice(0, 8)).toEqual([49406, 320, 1125, 539, 320, 2368, 49407, 0]);
    expect(row.slice(7).every((id) => id === 0)).toBe(true);
  });

  it('names the missing or broken file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-clip-'));
    try {
      expect(() => ClipTokenizer.fromFolder(dir)).toThrow(/vocab\.json.*ENOENT/);
      writeFileSync(join(dir, 'vocab.json'), '{"a": 0,');
      expect(() => ClipTokenizer.fromFolder(dir)).toThrow(/vocab\.json is not valid JSON/);
      writeFileSync(join(dir, 'vocab.json'), '["a"]');
      expect(() => ClipTokenizer.fromFolder(dir)).toThrow(/vocab\.json must map token strings to integer ids/);
      copyFileSync(join(TOKENIZER_DIR, 'vocab.json'), join(dir, 'vocab.json'));
      expect(() => ClipTokenizer.fromFolder(dir)).toThrow(/merges\.txt.*ENOENT/);
      writeFileSync(join(dir, 'merges.txt'), '#version: 0.2\ni n\nthree part line\n');
      expect(() => ClipTokenizer.fromFolder(dir)).toThrow(/merges\.txt line 3 is not a merge pair/);
      writeFileSync(join(dir, 'merges.txt'), '#version: 0.2\ni n\n');
      writeFileSync(join(dir, 'tokenizer_config.json'), '{"pad_token": "<pad>"}');
      expect(() => ClipTokenizer.fromFolder(dir)).toThrow(/pad token "<pad>" is not in the vocabulary/);
      writeFileSync(join(dir, 'tokenizer_config.json'), '{"pad_token": 3}');
      expect(() => ClipTokenizer.fromFolder(dir)).toThrow(/tokenizer_config\.json: pad_token must be a string/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('loads fast and tokenizes a prompt in well under a millisecond', () => {
    const start = performance.now();
    const tokenizer = ClipTokenizer.fromFolder(TOKENIZER_DIR, { onWarning: silent });
    const loadMs = performance.now() - start;
    // Loose bounds so a busy test machine does not fail them; typical numbers are ~80 ms and ~0.03 ms.
    expect(loadMs).toBeLessThan(1000);
    const tokenizeStart = performance.now();
    tokenizer.call(prompts);
    const perPromptMs = (performance.now() - tokenizeStart) / prompts.length;
    expect(perPromptMs).toBeLessThan(1);
  });
});

/** A temporary copy of the fixture tokenizer with some files replaced or added. */
function copyTokenizer(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-clip-'));
  for (const name of ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json']) {
    copyFileSync(join(TOKENIZER_DIR, name), join(dir, name));
  }
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}
