// LoRA: files round-trip in diffusers (PEFT) and kohya key styles and read the older diffusers
// keys; merging at weight 0 is the base model; merged and branch forms compute the same thing; a
// few training steps of the adapters alone lower the loss on a fixed batch; `nuri train lora`
// writes a file that `nuri generate --lora` applies.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { AdamW, Generator, SafetensorsFile, Tensor, compile, sym, writeSafetensors, type WritableTensor } from '../../src/engine/index.ts';
import { registerGenerate } from '../../src/cli/generate.ts';
import { registerTrain } from '../../src/cli/train.ts';
import { registerPersonalisation } from '../../src/cli/train-personalise.ts';
import { createImage } from '../../src/io/image.ts';
import { parseParameters } from '../../src/io/parameters.ts';
import { readPngText, writePng } from '../../src/io/png.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { compileTrainStep } from '../../src/training/train-step.ts';
import { conditionedFeeds, conditionedInputs, conditionedLoss, inputList, noiseSchedule, tokenIdsFeed } from '../../src/training/fine-tune.ts';
import { type ClipTextModel } from '../../src/models/clip-text.ts';
import { loadClipTextModel } from '../../src/models/checkpoint/components.ts';
import { LoraNetwork, type LoraLayerWeights, adaptableLayers, kohyaName, loadLoraFile, mergeLora } from '../../src/models/lora.ts';
import { type UNet2DConditionModel } from '../../src/models/unet.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { TINY_SD } from '../fixtures.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nuri-lora-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function models(): { unet: UNet2DConditionModel; textEncoder: ClipTextModel } {
  return { unet: loadUNet(join(TINY_SD, 'unet')), textEncoder: loadClipTextModel(join(TINY_SD, 'text_encoder')) };
}

/** A network whose B is non-zero too, so that it changes the model's output. */
function randomNetwork(m: ReturnType<typeof models>, seed: number, rank = 2, alpha = 3): LoraNetwork {
  const rng = new Generator(seed);
  const net = LoraNetwork.create(m, { rank, alpha, textEncoder: true }, rng);
  for (const p of net.parameters()) p.setValue(rng.randn(p.size).map((v) => v * 0.3));
  return net;
}

function sortByModule(layers: LoraLayerWeights[]): LoraLayerWeights[] {
  return [...layers].sort((a, b) => `${a.component}:${a.module}`.localeCompare(`${b.component}:${b.module}`));
}

describe('LoRA files', () => {
  it('adapts every attention projection: 4 per UNet attention, 4 per text encoder layer', () => {
    const m = models();
    expect(adaptableLayers(m.unet)).toHaveLength(4 * 2 * 16); // 16 transformer blocks, self + cross
    expect(adaptableLayers(m.textEncoder)).toHaveLength(4 * 5);
    expect(kohyaName('unet', 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0')).toBe('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0');
  });

  for (const style of ['diffusers', 'kohya'] as const) {
    it(`round-trips in ${style} key style (weights, ranks, alphas, components)`, () => {
      const m = models();
      const net = randomNetwork(m, 1);
      const path = join(dir, `${style}.safetensors`);
      net.save(path, style);
      const file = SafetensorsFile.open(path);
      const names = file.names();
      file.close();
      if (style === 'kohya') {
        expect(names).toContain('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight');
        expect(names).toContain('lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha');
      } else {
        expect(names).toContain('unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight');
        expect(names).toContain('text_encoder.text_model.encoder.layers.0.self_attn.out_proj.lora_B.weight');
      }
      const read = loadLoraFile(path, m);
      expect(read.style).toBe(style);
      expect(read.unmatched).toEqual([]);
      const before = sortByModule(net.weights());
      const after = sortByModule(read.layers);
      expect(after.map((l) => [l.component, l.module, l.rank, l.alpha])).toEqual(before.map((l) => [l.component, l.module, l.rank, l.alpha]));
      after.forEach((l, i) => {
        expect(l.down).toEqual(before[i].down);
        expect(l.up).toEqual(before[i].up);
      });
    });
  }

  it('reads the older diffusers keys (processor.to_q_lora, lora_linear_layer) with rank as alpha', () => {
    const m = models();
    const rng = new Generator(3);
    const tensors: Record<string, WritableTensor> = {
      'unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.down.weight': { dtype: 'F32', shape: [2, 64], data: rng.randn(128) },
      'unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight': { dtype: 'F32', shape: [64, 2], data: rng.randn(128) },
      'text_encoder.text_model.encoder.layers.1.self_attn.k_proj.lora_linear_layer.down.weight': { dtype: 'F32', shape: [4, 32], data: rng.randn(128) },
      'text_encoder.text_model.encoder.layers.1.self_attn.k_proj.lora_linear_layer.up.weight': { dtype: 'F32', shape: [32, 4], data: rng.randn(128) },
    };
    const path = join(dir, 'old.safetensors');
    writeSafetensors(path, tensors);
    const read = loadLoraFile(path, m);
    expect(read.style).toBe('diffusers-old');
    expect(sortByModule(read.layers).map((l) => [l.component, l.module, l.rank, l.alpha, l.inFeatures, l.outFeatures])).toEqual([
      ['text_encoder', 'text_model.encoder.layers.1.self_attn.k_proj', 4, 4, 32, 32],
      ['unet', 'mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0', 2, 2, 64, 64],
    ]);
  });

  it('reports kohya keys that name no layer of the model instead of guessing', () => {
    const m = models();
    const path = join(dir, 'stray.safetensors');
    writeSafetensors(path, { 'lora_unet_input_blocks_1_1_proj_in.alpha': { dtype: 'F32', shape: [], data: Float32Array.of(1) } });
    expect(loadLoraFile(path, m).unmatched).toEqual(['lora_unet_input_blocks_1_1_proj_in.alpha']);
  });
});

/** The UNet at 16×16 latents, batch 2, and the text encoder, as one graph: LoRA touches both. */
async function runModels(m: ReturnType<typeof models>): Promise<Float32Array> {
  const ids = Tensor.input('input_ids', [sym('B'), 77], 'int64');
  const sample = Tensor.input('sample', [sym('B'), 4, 16, 16]);
  const timestep = Tensor.input('timestep', [sym('B')]);
  const context = m.textEncoder.forward(ids).lastHiddenState;
  const graph = await compile({ inputs: [ids, sample, timestep], outputs: { noise: m.unet.forward(sample, timestep, context) } });
  const rng = new Generator(11);
  const idData = BigInt64Array.from({ length: 2 * 77 }, (_, i) => BigInt(i % 77 < 6 ? [49406, 320, 1125, 539, 320, 2368][i % 77] : 49407));
  const out = await graph.run({
    input_ids: { data: idData, shape: [2, 77] },
    sample: { data: rng.randn(2 * 4 * 16 * 16), shape: [2, 4, 16, 16] },
    timestep: { data: Float32Array.of(10, 700), shape: [2] },
  });
  return out.noise.data as Float32Array;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

describe('applying a LoRA', () => {
  it('merged at weight 0 gives exactly the base output', async () => {
    const base = await runModels(models());
    const m = models();
    await mergeLora(m, randomNetwork(models(), 5).weights(), 0);
    expect(await runModels(m)).toEqual(base);
  });

  it('merged weights and the unmerged branch give the same output, and both differ from the base', async () => {
    const weights = randomNetwork(models(), 6).weights();
    const base = await runModels(models());
    const branched = models();
    LoraNetwork.attach(branched, weights, 0.7);
    const merged = models();
    await mergeLora(merged, weights, 0.7);
    const a = await runModels(branched);
    const b = await runModels(merged);
    const scale = Math.max(...a.map(Math.abs));
    expect(maxAbsDiff(a, base)).toBeGreaterThan(1e-2 * scale);
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-5 * scale);
  });

  it('detaching the branches restores the base model', async () => {
    const base = await runModels(models());
    const m = models();
    randomNetwork(m, 7).detach();
    expect(await runModels(m)).toEqual(base);
  });
});

describe('training LoRA', () => {
  it('a few steps of the adapters alone lower the loss on a fixed batch; the base weights stay in their file', async () => {
    const c = loadStableDiffusion(TINY_SD);
    // The graph `nuri train lora` below compiles (same rank, alpha, batch and size): built once.
    const net = LoraNetwork.create(c, { rank: 2, alpha: 1 }, new Generator(1));
    const schedule = noiseSchedule(c);
    const inputs = conditionedInputs(1, [4, 8, 8], 77);
    const { loss } = conditionedLoss(c, inputs, schedule.predictionType);
    const params = net.parameters();
    const step = await compileTrainStep({ inputs: inputList(inputs), loss, params });
    expect(step.graph.graph.trainable).toHaveLength(params.length);
    expect(step.graph.graph.trainable.every((p) => params.includes(p))).toBe(true);
    const rng = new Generator(2);
    const feeds = conditionedFeeds(schedule, rng.randn(4 * 64), [1, 4, 8, 8], tokenIdsFeed(c.tokenizer, ['a red apple']), rng);
    const optimizer = new AdamW(params, { lr: 5e-2 });
    const losses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const out = await step.run(feeds);
      losses.push(out.loss);
      optimizer.step(out.grads);
    }
    for (let i = 1; i < 5; i++) expect(losses[i]).toBeLessThan(losses[i - 1]);
    expect(losses[4]).toBeLessThan(losses[0] * 0.95);
    expect([...c.unet.parameters(), ...c.textEncoder.parameters()].every((p) => p.source?.kind === 'file')).toBe(true);
  });

  it('nuri train lora writes a kohya-style file that nuri generate --lora applies', async () => {
    const images = join(dir, 'captioned');
    mkdirSync(images);
    for (let i = 0; i < 2; i++) {
      await writePng(join(images, `${i}.png`), createImage(64, 64, [0.8, 0.2 * i, 0.3]));
      writeFileSync(join(images, `${i}.txt`), i ? 'a pink square' : 'a red square');
    }
    const out = join(dir, 'trained');
    const program = new Command('nuri').exitOverride();
    registerPersonalisation(registerTrain(program));
    registerGenerate(program);
    await program.parseAsync(['train', 'lora', '--model', TINY_SD, '--images', images, '--rank', '2', '--alpha', '1', '--key-style', 'kohya', '--resolution', '64', '--steps', '2', '--lr', '1e-2', '--out', out], { from: 'user' });
    const file = join(out, 'pytorch_lora_weights.safetensors');
    const read = loadLoraFile(file, models());
    expect(read.style).toBe('kohya');
    expect(read.layers.every((l) => l.component === 'unet' && l.rank === 2 && l.alpha === 1)).toBe(true);

    const png = join(dir, 'with-lora.png');
    await program.parseAsync(['generate', 'a red square', '--model', TINY_SD, '--lora', `${file}:0.5`, '--steps', '2', '--width', '64', '--height', '64', '--seed', '1', '--out', png], { from: 'user' });
    expect(parseParameters(readPngText(png).parameters).extra).toMatchObject({ Lora: 'pytorch_lora_weights:0.5' });
  });
});
