// SDXL's UNet (tiny-sdxl: per-level heads and transformer depths, linear projections, text_time
// added conditions) against diffusers' UNet2DConditionModel, with the added path's intermediates.
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type CompiledGraph, Tensor, compile, sym } from '../../src/engine/index.ts';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { UNet2DConditionModel } from '../../src/models/unet.ts';
import { ClipTextModel } from '../../src/models/clip-text.ts';
import { parseClipTextConfig } from '../../src/models/checkpoint/clip-config.ts';
import { SDXL_BASE_CONFIG } from '../../src/models/single-file-sdxl.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { parseUNetConfig } from '../../src/models/checkpoint/unet-config.ts';
import { TINY_SDXL, referenceCase } from '../fixtures.ts';
import { maxAbsDiff } from '../schedulers/reference.ts';

const ref = readSafetensors(referenceCase('sdxl_unet').file);

function value(name: string): { data: Float32Array; shape: number[] } {
  const t = ref.get(name);
  if (!t) throw new Error(`reference tensor ${name} missing`);
  return { data: t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as BigInt64Array, Number), shape: t.shape };
}

let unet: UNet2DConditionModel;
let graph: CompiledGraph;
beforeAll(async () => {
  unet = loadUNet(join(TINY_SDXL, 'unet'));
  const b = sym('B');
  const sample = Tensor.input('sample', [b, 4, sym('H'), sym('W')]);
  const timestep = Tensor.input('timestep', [b]);
  const states = Tensor.input('encoder_hidden_states', [b, 77, 12]);
  const textEmbeds = Tensor.input('text_embeds', [b, 16]);
  const timeIds = Tensor.input('time_ids', [b, 6]);
  const added = { textEmbeds, timeIds };
  const noise = unet.forward(sample, timestep, states, { added });
  const addIn = unet.addedEmbeddingInput(added);
  graph = await compile({
    inputs: [sample, timestep, states, textEmbeds, timeIds],
    outputs: { noise, add_embedding_in: addIn, add_embedding_out: unet.add_embedding!.forward(addIn), time_embedding_out: unet.time_embedding.forward(unet.timeProjection(timestep)) },
  });
});

describe('SDXL UNet against diffusers (sdxl_unet)', () => {
  it('reads the SDXL config fields', () => {
    const c = unet.config;
    expect(c).toMatchObject({ addition_embed_type: 'text_time', addition_time_embed_dim: 8, projection_class_embeddings_input_dim: 64, use_linear_projection: true });
    expect(c.num_attention_heads).toEqual([1, 2, 4]);
    expect(c.transformer_layers_per_block).toEqual([1, 1, 2]);
    // The mid block takes the deepest level's depth, up blocks mirror the down levels.
    const names = new Set(unet.parameters().map((p) => p.name));
    expect(names.has('mid_block.attentions.0.transformer_blocks.1.attn2.to_k.weight')).toBe(true);
    expect(names.has('up_blocks.0.attentions.2.transformer_blocks.1.ff.net.2.weight')).toBe(true);
    expect(names.has('up_blocks.1.attentions.0.transformer_blocks.1.norm1.weight')).toBe(false);
    expect(names.has('add_embedding.linear_2.bias')).toBe(true);
  });

  it('noise_pred and the added-embedding intermediates within 1e-5', async () => {
    const out = await graph.run({
      sample: value('sample'),
      timestep: value('timestep'),
      encoder_hidden_states: value('encoder_hidden_states'),
      text_embeds: value('text_embeds'),
      time_ids: value('time_ids'),
    });
    for (const [ours, theirs] of [['add_embedding_in', 'add_embedding_in'], ['add_embedding_out', 'add_embedding_out'], ['time_embedding_out', 'time_embedding_out'], ['noise', 'noise_pred']]) {
      const want = value(theirs);
      expect(out[ours].shape).toEqual(want.shape);
      const err = maxAbsDiff(out[ours].data as Float32Array, want.data);
      console.log(`sdxl unet ${theirs}: max |Δ| ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-5);
    }
  });

  it('refuses a text_time config without its sizes, and a UNet called without its added conditions', () => {
    expect(() => parseUNetConfig({ addition_embed_type: 'text_time', addition_time_embed_dim: 256 })).toThrow(/"addition_embed_type" "text_time" needs "projection_class_embeddings_input_dim"/);
    expect(() => parseUNetConfig({ addition_embed_type: 'image' })).toThrow(/"addition_embed_type" "image" is not supported/);
    const x = Tensor.input('sample', [1, 4, 8, 8]);
    expect(() => unet.forward(x, Tensor.input('timestep', [1]), Tensor.input('encoder_hidden_states', [1, 77, 12]))).toThrow(/needs text_embeds and time_ids/);
  });
});

describe('SDXL base configs (single files without --config; the full-size bench UNet)', () => {
  it('build the published parameter counts: UNet 2,567,463,684, CLIP ViT-L 123,060,480, OpenCLIP bigG + projection 694,659,840', () => {
    const count = (m: { parameters(): { size: number }[] }) => m.parameters().reduce((n, p) => n + p.size, 0);
    expect(count(new UNet2DConditionModel(parseUNetConfig({ ...SDXL_BASE_CONFIG.unet })))).toBe(2_567_463_684);
    expect(count(new ClipTextModel(parseClipTextConfig({ ...SDXL_BASE_CONFIG.text_encoder })))).toBe(123_060_480);
    expect(count(new ClipTextModel(parseClipTextConfig({ ...SDXL_BASE_CONFIG.text_encoder_2 })))).toBe(694_659_840);
  });
});
