import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Generator, Tensor, compile, grad, mul, sum, sym } from '../../src/engine/index.ts';
import { float32ToFloat16, readSafetensors, type SafetensorsTensor, writeSafetensors } from '../../src/engine/safetensors.ts';
import { ClipTextModel, encodePrompts } from '../../src/models/clip-text.ts';
import { parseClipTextConfig } from '../../src/models/checkpoint/clip-config.ts';
import { loadClipTextModel } from '../../src/models/checkpoint/components.ts';
import { ClipTokenizer } from '../../src/tokenizers/clip.ts';
import { referenceCase, TINY_SD } from '../fixtures.ts';

const TEXT_ENCODER = join(TINY_SD, 'text_encoder');
const reference = referenceCase('text_encoder');
const tensors = readSafetensors(reference.file);
const B = 4;
const L = 77;
const C = 32;

function floats(name: string, from = tensors): Float32Array {
  const t = from.get(name);
  if (!t) throw new Error(`reference has no ${name}`);
  return t.data as Float32Array;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

const inputIds = tensors.get('input_ids')!.data as BigInt64Array;
const idsFeed = (data = inputIds, batch = B) => ({ input_ids: { data, shape: [batch, L] } });

/** LayerNorm over rows of C in plain JS, for checking the clip-skip output from the reference. */
function layerNorm(x: Float32Array, w: Float32Array, b: Float32Array, eps: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / C; r++) {
    const row = x.subarray(r * C, (r + 1) * C);
    const mean = row.reduce((a, v) => a + v, 0) / C;
    const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / C;
    for (let c = 0; c < C; c++) out[r * C + c] = ((row[c] - mean) / Math.sqrt(variance + eps)) * w[c] + b[c];
  }
  return out;
}

describe('ClipTextModel against transformers CLIPTextModel (tiny-sd text_encoder)', () => {
  const model = loadClipTextModel(TEXT_ENCODER);

  it('reads the config and binds every checkpoint tensor but position_ids', () => {
    expect(model.config).toMatchObject({ hidden_size: 32, intermediate_size: 37, num_hidden_layers: 5, num_attention_heads: 4, hidden_act: 'quick_gelu', vocab_size: 49408, max_position_embeddings: 77, eos_token_id: 49407, with_projection: false });
    const names = model.parameters().map((p) => p.name);
    const stored = [...readSafetensors(join(TEXT_ENCODER, 'model.safetensors')).keys()].filter((n) => n !== 'text_model.embeddings.position_ids');
    expect(names.sort()).toEqual(stored.sort());
    expect(names).toContain('text_model.encoder.layers.4.self_attn.out_proj.weight');
  });

  it('matches last hidden state, pooled output, penultimate layer and embeddings within 1e-4', async () => {
    const ids = Tensor.input('input_ids', [sym('B'), L], 'int64');
    const out = model.forward(ids, { outputHiddenStates: true });
    const graph = await compile({
      inputs: [ids],
      outputs: { last_hidden_state: out.lastHiddenState, pooler_output: out.pooled, hidden_states_penultimate: out.penultimate!, embeddings_output: out.hiddenStates![0] },
    });
    const result = await graph.run(idsFeed());
    for (const name of ['last_hidden_state', 'pooler_output', 'hidden_states_penultimate', 'embeddings_output']) {
      expect(result[name].shape).toEqual(tensors.get(name)!.shape);
      const err = maxAbsDiff(result[name].data as Float32Array, floats(name));
      console.log(`text_encoder ${name}: max abs error ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-4);
    }
    expect(out.hiddenStates).toHaveLength(6);
  });

  it('clipSkip 2 is the penultimate layer through the final LayerNorm, and the batch size is free', async () => {
    const ids = Tensor.input('input_ids', [sym('B'), L], 'int64');
    const graph = await compile({ inputs: [ids], outputs: { h: model.forward(ids, { clipSkip: 2 }).lastHiddenState } });
    const expected = layerNorm(floats('hidden_states_penultimate'), model.finalLayerNorm.weight.value(), model.finalLayerNorm.bias.value(), 1e-5);
    const all = await graph.run(idsFeed());
    const err = maxAbsDiff(all.h.data as Float32Array, expected);
    console.log(`text_encoder clipSkip=2 vs final_layer_norm(hidden_states[-2]): max abs error ${err.toExponential(2)}`);
    expect(err).toBeLessThan(1e-4);
    const one = await graph.run(idsFeed(inputIds.slice(2 * L, 3 * L), 1));
    expect(maxAbsDiff(one.h.data as Float32Array, expected.subarray(2 * L * C, 3 * L * C))).toBeLessThan(1e-5);
    expect(() => model.forward(ids, { clipSkip: 6 })).toThrow(/clipSkip/);
  });

  it('encodePrompts tokenizes and encodes to the reference conditioning', async () => {
    const tokenizer = ClipTokenizer.fromFolder(join(TINY_SD, 'tokenizer'));
    const { data, shape } = await encodePrompts(model, tokenizer, reference.prompts as string[]);
    expect(shape).toEqual([B, L, C]);
    expect(maxAbsDiff(data, floats('last_hidden_state'))).toBeLessThan(1e-4);
  });
});

describe('Textual Inversion rows', () => {
  const ti = referenceCase('train_textual_inversion');
  const tiTensors = readSafetensors(ti.file);

  it('an added row initialised from "toy" reproduces the reference encoder_hidden_states', async () => {
    const model = loadClipTextModel(TEXT_ENCODER);
    const tokenizer = ClipTokenizer.fromFolder(join(TINY_SD, 'tokenizer'));
    expect(tokenizer.addToken(ti.placeholder_token as string)).toBe(49408);
    const init = model.tokenEmbeddingRow(ti.initializer_id as number);
    expect(maxAbsDiff(init, floats('placeholder_embedding_init', tiTensors))).toBe(0);
    const [row] = model.addTokenEmbeddings([init]);
    expect(row.shape).toEqual([1, C]);
    expect(model.embeddings.tokenCount).toBe(49409);
    const { data } = await encodePrompts(model, tokenizer, ti.prompts as string[]);
    const err = maxAbsDiff(data, floats('encoder_hidden_states', tiTensors));
    console.log(`train_textual_inversion encoder_hidden_states: max abs error ${err.toExponential(2)}`);
    expect(err).toBeLessThan(1e-4);
  });

  it('pools at the first EOS even when an added id is larger than EOS', async () => {
    const model = loadClipTextModel(TEXT_ENCODER);
    model.addTokenEmbeddings([model.tokenEmbeddingRow(5988)]);
    const row = new BigInt64Array(L).fill(49407n);
    row.set([49406n, 49408n, 320n], 0); // BOS, the added token, "a", then EOS at position 3
    const ids = Tensor.input('input_ids', [sym('B'), L], 'int64');
    const out = model.forward(ids);
    const result = await (await compile({ inputs: [ids], outputs: { h: out.lastHiddenState, p: out.pooled } })).run(idsFeed(row, 1));
    const h = result.h.data as Float32Array;
    expect(maxAbsDiff(result.p.data as Float32Array, h.subarray(3 * C, 4 * C))).toBe(0);
  });

  it('trains one added row: only it is a graph input, and its gradient matches finite differences', async () => {
    const model = loadClipTextModel(TEXT_ENCODER);
    const [row] = model.addTokenEmbeddings([model.tokenEmbeddingRow(5988)]);
    const tiIds = tiTensors.get('input_ids')!.data as BigInt64Array;
    const weights = Tensor.constant(new Generator(7).randn(2 * L * C), [2, L, C]);
    const ids = Tensor.input('input_ids', [2, L], 'int64');
    const loss = sum(mul(model.forward(ids).lastHiddenState, weights));
    const [g] = grad(loss, [row.tensor]);
    const graph = await compile({ inputs: [ids], outputs: { loss, g }, trainable: [row] });
    expect(graph.graph.trainable.map((p) => p.name)).toEqual(['text_model.embeddings.token_embedding.added_49408']);
    const feed = { input_ids: { data: tiIds, shape: [2, L] } };
    const base = await graph.run(feed);
    const gradient = base.g.data as Float32Array;
    expect(gradient.some((v) => v !== 0)).toBe(true);
    const value = row.value();
    for (const i of [0, 17]) {
      const eps = 1e-2;
      const at = async (delta: number) => {
        const shifted = new Float32Array(value);
        shifted[i] += delta;
        return ((await graph.run({ ...feed, [row.name]: shifted })).loss.data as Float32Array)[0];
      };
      const numeric = ((await at(eps)) - (await at(-eps))) / (2 * eps);
      expect(Math.abs(numeric - gradient[i])).toBeLessThan(2e-2 * Math.max(1, Math.abs(gradient[i])));
    }
  });
});

describe('loadClipTextModel', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-clip-text-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const stored = readSafetensors(join(TEXT_ENCODER, 'model.safetensors'));

  /** A text_encoder folder with the tiny checkpoint edited, weights written as `file`. */
  function folder(name: string, edit: (t: Map<string, SafetensorsTensor>) => void, file = 'model.safetensors'): string {
    const made = mkdtempSync(join(dir, `${name}-`));
    const copy = new Map(stored);
    edit(copy);
    copyFileSync(join(TEXT_ENCODER, 'config.json'), join(made, 'config.json'));
    writeSafetensors(join(made, file), copy as never);
    return made;
  }

  it('accepts checkpoints without position_ids (transformers after 4.30)', () => {
    const made = folder('no-position-ids', (t) => t.delete('text_model.embeddings.position_ids'));
    expect(() => loadClipTextModel(made)).not.toThrow();
  });

  it('names missing, unexpected and misshapen tensors in one error', () => {
    const made = folder('broken', (t) => {
      t.delete('text_model.encoder.layers.2.mlp.fc1.bias');
      t.set('text_model.extra.weight', { dtype: 'F32', shape: [2], data: new Float32Array(2) });
      t.set('text_model.final_layer_norm.weight', { dtype: 'F32', shape: [31], data: new Float32Array(31) });
    });
    let message = '';
    try {
      loadClipTextModel(made);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/missing tensor for text_model\.encoder\.layers\.2\.mlp\.fc1\.bias/);
    expect(message).toMatch(/unexpected tensor text_model\.extra\.weight/);
    expect(message).toMatch(/final_layer_norm\.weight.*\[31\]/);
  });

  it('loads the fp16 variant when it is the only weights file', async () => {
    const made = folder(
      'fp16',
      (t) => {
        for (const [name, tensor] of t) {
          if (tensor.dtype === 'F32') t.set(name, { dtype: 'F16', shape: tensor.shape, data: float32ToFloat16(tensor.data as Float32Array) });
        }
      },
      'model.fp16.safetensors',
    );
    const model = loadClipTextModel(made);
    const ids = Tensor.input('input_ids', [sym('B'), L], 'int64');
    const result = await (await compile({ inputs: [ids], outputs: { h: model.forward(ids).lastHiddenState } })).run(idsFeed());
    expect(maxAbsDiff(result.h.data as Float32Array, floats('last_hidden_state'))).toBeLessThan(5e-2);
  });

  it('reports a folder without config.json or without safetensors weights', () => {
    expect(() => loadClipTextModel(join(dir, 'nowhere'))).toThrow(/no config\.json/);
    const made = mkdtempSync(join(dir, 'pickle-'));
    copyFileSync(join(TEXT_ENCODER, 'config.json'), join(made, 'config.json'));
    writeFileSync(join(made, 'pytorch_model.bin'), '');
    expect(() => loadClipTextModel(made)).toThrow(/no model\.safetensors or model\.fp16\.safetensors.*pickle/);
  });

  it('builds from a config with fresh weights', () => {
    const model = new ClipTextModel(parseClipTextConfig({ hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, vocab_size: 100, eos_token_id: 99 }));
    model.init(new Generator(1));
    expect(model.parameters().every((p) => p.source?.kind === 'data')).toBe(true);
    expect(() => parseClipTextConfig({ hidden_act: 'relu6' })).toThrow(/hidden_act/);
  });
});
