// Fuzzing the loaders beyond safetensors (test/engine/safetensors.test.ts): a few thousand seeded
// mutations of configs (unet, vae, text_encoder, scheduler), tokenizer files (vocab.json,
// merges.txt, added_tokens.json), LoRA files and Textual Inversion files. Every outcome must be a
// valid load or an Error naming the file (or, for a config that disagrees with its weights, the
// weights file in the same folder) — never another throw, a hang (each
// group is bounded), or a loaded result holding a non-finite weight.

import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { firstNonFinite, writeSafetensors } from '../../src/engine/index.ts';
import { loadClipTextModel } from '../../src/models/checkpoint/components.ts';
import { readSchedulerConfig } from '../../src/models/load.ts';
import { loadLoraFile, mergeLora } from '../../src/models/lora.ts';
import { addEmbedding, readEmbeddingFile } from '../../src/models/textual-inversion.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { loadVae } from '../../src/models/checkpoint/components.ts';
import { ClipTokenizer } from '../../src/tokenizers/clip.ts';
import { copyTinySd } from '../model-copy.ts';
import { Mutator, cleanOutcome } from './mutate.ts';

/**
 * Runs `cases` mutations (a fixed number, not a time budget: a loaded machine must test as much as
 * a quiet one), stopping early after 10 problems; returns the problems found. Yields to the event
 * loop every 50 ms, so the test runner's messages are answered in time.
 */
async function fuzz(cases: number, one: (m: Mutator, i: number) => string | undefined): Promise<{ ran: number; problems: string[] }> {
  const problems: string[] = [];
  let yielded = performance.now();
  let ran = 0;
  for (; ran < cases && problems.length < 10; ran++) {
    const problem = one(new Mutator(1000 + ran), ran);
    if (problem) problems.push(`case ${ran}: ${problem}`);
    if (performance.now() - yielded > 50) {
      await new Promise((r) => setImmediate(r));
      yielded = performance.now();
    }
  }
  return { ran, problems };
}

/** Mutations per loader (LoRA files, which also merge, half as many). */
const CASES = 400;

const FIELDS = {
  unet: ['layers_per_block', 'block_out_channels', 'transformer_layers_per_block', 'attention_head_dim', 'num_attention_heads', 'cross_attention_dim', 'norm_eps', 'norm_num_groups', 'sample_size', 'conv_in_kernel', 'time_embedding_dim', 'freq_shift'],
  vae: ['layers_per_block', 'block_out_channels', 'scaling_factor', 'shift_factor', 'latents_mean', 'latents_std', 'norm_num_groups', 'latent_channels', 'sample_size'],
  text_encoder: ['num_hidden_layers', 'hidden_size', 'num_attention_heads', 'intermediate_size', 'layer_norm_eps', 'vocab_size', 'max_position_embeddings', 'eos_token_id', 'hidden_act'],
  scheduler: ['num_train_timesteps', 'beta_start', 'beta_end', 'beta_schedule', 'steps_offset', 'trained_betas', 'prediction_type', 'timestep_spacing'],
};

describe('loader fuzzing', () => {
  const model = copyTinySd();

  it('configs: a clean error naming the file, or a model with finite sizes', async () => {
    const loaders = {
      unet: () => loadUNet(join(model, 'unet')).config.norm_eps,
      vae: () => loadVae(join(model, 'vae')).config.scaling_factor,
      text_encoder: () => loadClipTextModel(join(model, 'text_encoder')).config.layer_norm_eps,
      scheduler: () => Object.keys(readSchedulerConfig(join(model, 'scheduler', 'scheduler_config.json'))).length,
    };
    const files = { unet: 'unet/config.json', vae: 'vae/config.json', text_encoder: 'text_encoder/config.json', scheduler: 'scheduler/scheduler_config.json' };
    const originals = Object.fromEntries(Object.entries(files).map(([k, f]) => [k, readFileSync(join(model, f), 'utf8')])) as Record<keyof typeof files, string>;
    const kinds = Object.keys(files) as (keyof typeof files)[];
    const { ran, problems } = await fuzz(CASES, (m, i) => {
      const kind = kinds[i % kinds.length]!;
      const path = join(model, files[kind]);
      const text = m.int(4) === 0 ? m.mutateText(originals[kind]) : JSON.stringify(m.mutateJson(JSON.parse(originals[kind]) as Record<string, unknown>, FIELDS[kind]));
      writeFileSync(path, text);
      try {
        // The config's own errors name it; a config that parses but disagrees with the weights is
        // reported by the weights file, in the same folder.
        return cleanOutcome(join(model, files[kind].split('/')[0]!), () => {
          const value = loaders[kind]();
          if (!Number.isFinite(value)) throw new Error(`loaded with a non-finite value ${value}`);
        });
      } finally {
        writeFileSync(path, originals[kind]);
      }
    });
    expect(problems).toEqual([]);
    expect(ran).toBe(CASES);
  });

  it('tokenizer files: a clean error naming the file, or ids that are all rows of the table', async () => {
    // A small BPE vocabulary: the 256 byte characters with and without </w>, a few merges, specials.
    const dir = join(mkdtempSync(join(tmpdir(), 'nuri-fuzz-tok-')), 'tokenizer');
    mkdirSync(dir);
    const vocab: Record<string, number> = {};
    for (let b = 33; b < 127; b++) vocab[String.fromCharCode(b)] = Object.keys(vocab).length;
    for (let b = 33; b < 127; b++) vocab[`${String.fromCharCode(b)}</w>`] = Object.keys(vocab).length;
    for (const t of ['ca', 'cat</w>', 'at</w>', '<|startoftext|>', '<|endoftext|>']) vocab[t] = Object.keys(vocab).length;
    const originals = {
      'vocab.json': JSON.stringify(vocab),
      'merges.txt': '#version: 0.2\nc a\nca t</w>\na t</w>\n',
      'added_tokens.json': JSON.stringify({ '<toy>': Object.keys(vocab).length }),
    };
    const names = Object.keys(originals) as (keyof typeof originals)[];
    for (const name of names) writeFileSync(join(dir, name), originals[name]);
    const { ran, problems } = await fuzz(CASES, (m, i) => {
      const name = names[i % names.length]!;
      const original = originals[name];
      let text: string;
      if (name === 'merges.txt' || m.int(3) === 0) text = m.mutateText(original);
      else {
        const json = JSON.parse(original) as Record<string, unknown>;
        json[m.pick(['cat</w>', 'a', '<toy>', '', ' ', '<|endoftext|>', 'new'])] = m.hostileValue();
        text = JSON.stringify(json);
      }
      writeFileSync(join(dir, name), text);
      try {
        return cleanOutcome(dir, () => {
          const tokenizer = ClipTokenizer.fromFolder(dir);
          for (const row of tokenizer.call(['a cat <toy> at', '']).inputIds) {
            for (const id of row) if (!(id >= 0 && id < tokenizer.size)) throw new Error(`an id ${id} outside the ${tokenizer.size} rows`);
          }
        });
      } finally {
        writeFileSync(join(dir, name), original);
      }
    });
    expect(problems).toEqual([]);
    expect(ran).toBe(CASES);
  });

  it('LoRA files: a clean error naming the file, or a merge that leaves every weight finite', async () => {
    const unet = loadUNet(join(model, 'unet'));
    const dir = mkdtempSync(join(tmpdir(), 'nuri-fuzz-lora-'));
    const base = join(dir, 'base.safetensors');
    const layer = (i: number) => `lora_unet_down_blocks_0_attentions_${i}_transformer_blocks_0_attn1_to_q`;
    writeSafetensors(base, Object.fromEntries([0, 1].flatMap((i) => [
      [`${layer(i)}.lora_down.weight`, { dtype: 'F32' as const, shape: [2, 32], data: new Float32Array(64).fill(0.01) }],
      [`${layer(i)}.lora_up.weight`, { dtype: 'F32' as const, shape: [32, 2], data: new Float32Array(64).fill(0.01) }],
      [`${layer(i)}.alpha`, { dtype: 'F32' as const, shape: [], data: Float32Array.of(2) }],
    ])));
    const bytes = readFileSync(base);
    const path = join(dir, 'lora.safetensors');
    const problems: string[] = [];
    let ran = 0;
    for (; ran < CASES / 2 && problems.length < 10; ran++) {
      const m = new Mutator(5000 + ran);
      writeFileSync(path, m.mutateSafetensors(bytes));
      const weight = m.pick([1, 0.5, -2, 1e30, 1e308]);
      let layers: ReturnType<typeof loadLoraFile>['layers'] = [];
      const problem = cleanOutcome(path, () => (layers = loadLoraFile(path, { unet }).layers));
      if (problem) problems.push(`case ${ran}: ${problem}`);
      if (problem || !layers.length) continue;
      try {
        await mergeLora({ unet }, layers, weight, `--lora ${path}`);
      } catch (e) {
        if (!(e instanceof Error) || !e.message.includes(path)) problems.push(`case ${ran}: merge error does not name the file: ${String(e)}`);
        continue;
      }
      for (const l of layers) {
        const p = unet.parameters().find((q) => q.name === `${l.module}.weight`)!;
        if (firstNonFinite(p.value()) >= 0) problems.push(`case ${ran}: ${l.module} merged to a non-finite weight`);
      }
    }
    expect(problems).toEqual([]);
    expect(ran).toBe(CASES / 2);
  });

  it('Textual Inversion files: a clean error naming the file, or finite vectors added as new rows', async () => {
    const tokenizer = ClipTokenizer.fromFolder(join(model, 'tokenizer'));
    const textEncoder = loadClipTextModel(join(model, 'text_encoder'));
    const dir = mkdtempSync(join(tmpdir(), 'nuri-fuzz-ti-'));
    const base = join(dir, 'base.safetensors');
    writeSafetensors(base, { '<toy>': { dtype: 'F32', shape: [2, 32], data: new Float32Array(64).fill(0.1) } });
    const bytes = readFileSync(base);
    const path = join(dir, 'learned_embeds.safetensors');
    const { ran, problems } = await fuzz(CASES, (m, i) => {
      writeFileSync(path, m.mutateSafetensors(bytes));
      return cleanOutcome(path, () => {
        const embedding = readEmbeddingFile(path, i % 3 === 0 ? `<toy${i}>` : undefined);
        for (const v of embedding.vectors) if (firstNonFinite(v) >= 0) throw new Error('read a non-finite vector');
        const ids = addEmbedding(tokenizer, textEncoder, embedding);
        if (ids.some((id) => id >= textEncoder.embeddings.tokenCount)) throw new Error('an id beyond the text encoder rows');
      });
    });
    expect(problems).toEqual([]);
    expect(ran).toBe(CASES);
  });
});
