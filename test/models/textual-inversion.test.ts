// Textual Inversion files that would change nothing or change the wrong thing are refused: a
// [0, C] tensor (no vector), NaN rows, and a token that is an ordinary word once lower-cased
// ("Cat" would take over "cat"), each error naming the file.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../src/engine/safetensors.ts';
import { loadClipTextModel } from '../../src/models/checkpoint/components.ts';
import { addEmbedding, readEmbeddingFile } from '../../src/models/textual-inversion.ts';
import { ClipTokenizer } from '../../src/tokenizers/clip.ts';
import { TINY_SD } from '../fixtures.ts';

function embeddingFile(token: string, rows: number, fill: (data: Float32Array) => void = () => {}): string {
  const data = new Float32Array(rows * 32).fill(0.1);
  fill(data);
  const path = join(mkdtempSync(join(tmpdir(), 'nuri-ti-')), 'learned_embeds.safetensors');
  writeSafetensors(path, { [token]: { dtype: 'F32', shape: [rows, 32], data } });
  return path;
}

describe('Textual Inversion files', () => {
  const tokenizer = () => ClipTokenizer.fromFolder(join(TINY_SD, 'tokenizer'));
  const textEncoder = () => loadClipTextModel(join(TINY_SD, 'text_encoder'));

  it('adds a sound embedding', () => {
    const e = readEmbeddingFile(embeddingFile('<toy>', 2));
    expect(addEmbedding(tokenizer(), textEncoder(), e)).toEqual([49408, 49409]);
  });

  it('refuses a [0, C] tensor, naming the file', () => {
    const path = embeddingFile('<toy>', 0);
    expect(() => readEmbeddingFile(path)).toThrow(`embedding file ${path}: tensor "<toy>" has shape [0, 32], which holds no vector`);
  });

  it('refuses NaN rows, naming the file and row', () => {
    const path = embeddingFile('<toy>', 3, (d) => (d[40] = NaN));
    expect(() => readEmbeddingFile(path)).toThrow(`embedding file ${path}: tensor "<toy>" holds NaN in row 1`);
  });

  it('refuses a multi-vector embedding one of whose tokens exists, adding none of them', () => {
    const [tok, enc] = [tokenizer(), textEncoder()];
    addEmbedding(tok, enc, readEmbeddingFile(embeddingFile('<toy>_2', 1)));
    const rows = enc.embeddings.tokenCount;
    const path = embeddingFile('<toy>', 3);
    expect(() => addEmbedding(tok, enc, readEmbeddingFile(path))).toThrow(`embedding "<toy>" (${path}): ClipTokenizer: "<toy>_2" was already added (id 49408)`);
    expect(enc.embeddings.tokenCount).toBe(rows);
    expect(addEmbedding(tok, enc, readEmbeddingFile(embeddingFile('<toy>', 1)))).toEqual([49409]); // "<toy>" was not taken
  });

  for (const token of ['Cat', 'CAT', 'cats']) {
    it(`refuses the token ${token}, a vocabulary word once lower-cased`, () => {
      const path = embeddingFile(token, 1);
      expect(() => addEmbedding(tokenizer(), textEncoder(), readEmbeddingFile(path))).toThrow(new RegExp(`embedding "${token}" \\(${path}\\): .*already in the vocabulary`));
    });
  }
});
