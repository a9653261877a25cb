// Textual Inversion embeddings (Gal et al. 2022): a new word for the text encoder, stored as one
// or more learned token-embedding rows. Files read here:
//   diffusers  learned_embeds.safetensors: one tensor named after the token, [C] or [n, C]
//   A1111      NAME.safetensors: "emb_params" (or "string_to_param.*") [n, C]; the token is NAME
//   SDXL       NAME.safetensors: "clip_l" [n, 768] and "clip_g" [n, 1280], one row set per text encoder
// A multi-vector embedding adds tokens TOKEN, TOKEN_1, …, TOKEN_{n−1} and a prompt's TOKEN is
// expanded to all of them, as diffusers does.

import { basename, extname } from 'node:path';
import { firstNonFinite } from '../engine/finite.ts';
import { SafetensorsFile, writeSafetensors } from '../engine/safetensors.ts';
import type { ClipTokenizer } from '../tokenizers/clip.ts';
import type { ClipTextModel } from './clip-text.ts';

export interface TextualInversionEmbedding {
  token: string;
  /** One row [C] per vector (SDXL: the first text encoder's, clip_l). */
  vectors: Float32Array[];
  /** SDXL's second text encoder's rows (clip_g), as many as `vectors`; absent for SD 1.x/2.x embeddings. */
  vectors2?: Float32Array[];
  /** The file it was read from, for messages. */
  source?: string;
}

const A1111_KEYS = ['emb_params', 'string_to_param.*'];

/** Reads an embedding file; `token` overrides the name stored in (or implied by) the file. */
export function readEmbeddingFile(path: string, token?: string): TextualInversionEmbedding {
  const file = SafetensorsFile.open(path);
  try {
    if (file.has('clip_l') && file.has('clip_g')) {
      const [vectors, vectors2] = [readRows(path, file, 'clip_l'), readRows(path, file, 'clip_g')];
      if (vectors.length !== vectors2.length) throw new Error(`embedding file ${path}: "clip_l" has ${vectors.length} vectors but "clip_g" has ${vectors2.length}; SDXL needs one of each per token`);
      return { token: token ?? basename(path, extname(path)), vectors, vectors2, source: path };
    }
    const { name, fileToken } = embeddingTensor(path, file.names());
    return { token: token ?? fileToken, vectors: readRows(path, file, name), source: path };
  } finally {
    file.close();
  }
}

/** The rows of one embedding tensor, [C] or [n, C], checked for shape and finite values. */
function readRows(path: string, file: SafetensorsFile, name: string): Float32Array[] {
  const { shape } = file.entry(name);
  if (shape.length < 1 || shape.length > 2) throw new Error(`embedding file ${path}: tensor "${name}" has shape [${shape.join(', ')}]; expected [C] or [n, C]`);
  const dim = shape[shape.length - 1];
  const count = shape.length === 2 ? shape[0] : 1;
  if (count < 1 || dim < 1) throw new Error(`embedding file ${path}: tensor "${name}" has shape [${shape.join(', ')}], which holds no vector`);
  const data = file.readFloat32(name);
  const bad = firstNonFinite(data);
  if (bad >= 0) throw new Error(`embedding file ${path}: tensor "${name}" holds ${data[bad]} in row ${Math.floor(bad / dim)}; an embedding must hold finite numbers`);
  return Array.from({ length: count }, (_, i) => data.slice(i * dim, (i + 1) * dim));
}

/** The token an embedding file adds, from its header alone (for listings). */
export function embeddingFileToken(path: string): string {
  const file = SafetensorsFile.open(path);
  try {
    return file.has('clip_l') && file.has('clip_g') ? basename(path, extname(path)) : embeddingTensor(path, file.names()).fileToken;
  } finally {
    file.close();
  }
}

/** Which tensor holds the vectors, and the token the file names: the tensor's name, or A1111's file name. */
function embeddingTensor(path: string, names: string[]): { name: string; fileToken: string } {
  const a1111 = names.find((n) => A1111_KEYS.includes(n));
  const name = a1111 ?? (names.length === 1 ? names[0] : undefined);
  if (!name) {
    throw new Error(`embedding file ${path} holds ${names.length} tensors (${names.slice(0, 6).join(', ')}); expected one tensor named after its token, or A1111's "emb_params"`);
  }
  return { name, fileToken: a1111 ? basename(path, extname(path)) : name };
}

/** Writes diffusers' learned_embeds.safetensors: one tensor [n, C] named after the token. */
export function writeEmbeddingFile(path: string, embedding: TextualInversionEmbedding): void {
  const dim = embedding.vectors[0]?.length ?? 0;
  const data = new Float32Array(embedding.vectors.length * dim);
  embedding.vectors.forEach((v, i) => data.set(v, i * dim));
  writeSafetensors(path, { [embedding.token]: { dtype: 'F32', shape: [embedding.vectors.length, dim], data } });
}

/** The token names an embedding of n vectors adds: TOKEN, TOKEN_1, …. */
export function embeddingTokens(embedding: TextualInversionEmbedding): string[] {
  return embedding.vectors.map((_, i) => (i === 0 ? embedding.token : `${embedding.token}_${i}`));
}

/**
 * Adds the embedding's tokens to the tokenizer and its rows to the text encoder, so prompts can use
 * the token. Returns the new ids.
 */
export function addEmbedding(tokenizer: ClipTokenizer, textEncoder: ClipTextModel, embedding: TextualInversionEmbedding): number[] {
  const dim = textEncoder.config.hidden_size;
  const what = `embedding "${embedding.token}"${embedding.source ? ` (${embedding.source})` : ''}`;
  const bad = embedding.vectors.find((v) => v.length !== dim);
  if (bad) throw new Error(`${what} has ${bad.length}-wide vectors; this text encoder's are ${dim} wide (an embedding for another model?)`);
  if (!embedding.vectors.length) throw new Error(`${what} holds no vector`);
  // Every token checked before any is added: a refusal must leave tokenizer and text encoder as they were.
  const tokens = embeddingTokens(embedding);
  for (const token of tokens) {
    try {
      tokenizer.checkNewToken(token);
    } catch (e) {
      throw new Error(`${what}: ${(e as Error).message}`);
    }
  }
  return tokens.map((token, i) => {
    const expected = textEncoder.embeddings.tokenCount;
    let id: number;
    try {
      id = tokenizer.addToken(token);
    } catch (e) {
      throw new Error(`${what}: ${(e as Error).message}`);
    }
    if (id !== expected) {
      throw new Error(`${what}: cannot add token ${JSON.stringify(token)}: the tokenizer gave id ${id} but the text encoder's next row is ${expected}${id < expected ? ' (already added?)' : ''}`);
    }
    textEncoder.addTokenEmbeddings([embedding.vectors[i]]);
    return id;
  });
}

/**
 * Adds an embedding to a model's text towers: SD 1.x/2.x embeddings to its one text encoder,
 * SDXL's clip_l rows to the first and clip_g rows to the second. Both are checked before either changes.
 */
export function addEmbeddingToModel(
  model: { tokenizer: ClipTokenizer; textEncoder: ClipTextModel; tokenizer2?: ClipTokenizer; textEncoder2?: ClipTextModel },
  embedding: TextualInversionEmbedding,
): number[] {
  const what = `embedding "${embedding.token}"${embedding.source ? ` (${embedding.source})` : ''}`;
  const { tokenizer2, textEncoder2 } = model;
  if (!textEncoder2 || !tokenizer2) {
    if (embedding.vectors2) throw new Error(`${what} is an SDXL embedding (clip_l and clip_g); this model has one text encoder`);
    return addEmbedding(model.tokenizer, model.textEncoder, embedding);
  }
  if (!embedding.vectors2) throw new Error(`${what} has one set of vectors; an SDXL model needs "clip_l" and "clip_g" (one per text encoder)`);
  const dim2 = textEncoder2.config.hidden_size;
  const bad = embedding.vectors2.find((v) => v.length !== dim2);
  if (bad) throw new Error(`${what}: its clip_g vectors are ${bad.length} wide; this model's second text encoder is ${dim2} wide`);
  for (const token of embeddingTokens(embedding)) {
    try {
      tokenizer2.checkNewToken(token);
    } catch (e) {
      throw new Error(`${what}: ${(e as Error).message}`);
    }
  }
  const ids = addEmbedding(model.tokenizer, model.textEncoder, embedding);
  const ids2 = addEmbedding(tokenizer2, textEncoder2, { ...embedding, vectors: embedding.vectors2 });
  if (ids.join() !== ids2.join()) throw new Error(`${what}: the two tokenizers gave different ids (${ids.join(', ')} vs ${ids2.join(', ')})`);
  return ids;
}

/** Rewrites a prompt so a multi-vector embedding's token stands for all its tokens. */
export function expandEmbeddingTokens(prompt: string, embeddings: readonly TextualInversionEmbedding[]): string {
  let out = prompt;
  for (const e of embeddings) if (e.vectors.length > 1) out = out.split(e.token).join(embeddingTokens(e).join(' '));
  return out;
}
