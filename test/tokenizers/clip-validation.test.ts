// Tokenizer files that would silently use another embedding row, or fail late inside ONNX Runtime,
// are refused at load with the file and the word named: ids that wrap in an Int32Array
// (4294967291 → −5), negative or fractional ids, empty added tokens, and ids beyond the text
// encoder's rows — also when the tokenizer comes with `--tokenizer` for a single-file checkpoint.

import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { ClipTokenizer } from '../../src/tokenizers/clip.ts';
import { copyTinySd } from '../model-copy.ts';
import { FIXTURES, TINY_SD } from '../fixtures.ts';

function tokenizerWith(change: (vocab: Record<string, number>) => void, added?: Record<string, number>): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'nuri-tok-')), 'tokenizer');
  cpSync(join(TINY_SD, 'tokenizer'), dir, { recursive: true });
  const vocab = JSON.parse(readFileSync(join(dir, 'vocab.json'), 'utf8')) as Record<string, number>;
  change(vocab);
  writeFileSync(join(dir, 'vocab.json'), JSON.stringify(vocab));
  if (added) writeFileSync(join(dir, 'added_tokens.json'), JSON.stringify(added));
  return dir;
}

function singleFileConfig(): string {
  const yaml = `${readFileSync(join(FIXTURES, 'tiny-sd-single.yaml'), 'utf8').trimEnd()}\n      params:\n        num_heads: 4\n`;
  const path = join(mkdtempSync(join(tmpdir(), 'nuri-single-')), 'tiny.yaml');
  writeFileSync(path, yaml);
  return path;
}

describe('tokenizer ids', () => {
  for (const id of [4294967291, -5, 1.5]) {
    it(`refuses the id ${id}, naming vocab.json and the word`, () => {
      const dir = tokenizerWith((v) => (v['cat</w>'] = id));
      expect(() => ClipTokenizer.fromFolder(dir)).toThrow(`ClipTokenizer: ${join(dir, 'vocab.json')}: "cat</w>" has id ${id}; ids must be integers from 0 to 2147483647`);
    });
  }

  it('refuses them through --tokenizer for a single-file checkpoint too', () => {
    const dir = tokenizerWith((v) => (v['cat</w>'] = 4294967291));
    const load = () => loadStableDiffusion(join(FIXTURES, 'tiny-sd-single.safetensors'), { config: singleFileConfig(), tokenizer: dir });
    expect(load).toThrow(`${join(dir, 'vocab.json')}: "cat</w>" has id 4294967291`);
  });

  it('refuses an empty added token, naming added_tokens.json', () => {
    const dir = tokenizerWith(() => {}, { '': 49408 });
    expect(() => ClipTokenizer.fromFolder(dir)).toThrow(`${join(dir, 'added_tokens.json')} has an empty token`);
  });

  it("refuses ids beyond the text encoder's rows at load, naming the tokenizer", () => {
    const model = copyTinySd();
    const tokenizer = join(model, 'tokenizer');
    writeFileSync(join(tokenizer, 'added_tokens.json'), JSON.stringify({ '<far>': 60000 }));
    expect(() => loadStableDiffusion(model)).toThrow(`tokenizer ${tokenizer} has ids up to 60000, but ${join(model, 'text_encoder')} has 49408 token embedding rows`);
  });

  it('refuses the same for a single-file checkpoint with --tokenizer', () => {
    const dir = tokenizerWith((v) => (v['<far>'] = 50000));
    const load = () => loadStableDiffusion(join(FIXTURES, 'tiny-sd-single.safetensors'), { config: singleFileConfig(), tokenizer: dir });
    expect(load).toThrow(`tokenizer ${dir} has ids up to 50000`);
  });
});
