import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CompiledGraph, Generator, Tensor, compile, dimKey, dimMul, mul, sym } from '../../src/engine/index.ts';
import { float32ToFloat16, readSafetensors, writeSafetensors, type WritableTensor } from '../../src/engine/safetensors.ts';
import type { AttentionCall, AttentionHook } from '../../src/models/attention.ts';
import { UNet2DConditionModel } from '../../src/models/unet.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { parseUNetConfig } from '../../src/models/checkpoint/unet-config.ts';
import { TINY_SD, referenceCase } from '../fixtures.ts';

const UNET_DIR = join(TINY_SD, 'unet');
const WEIGHTS = 'diffusion_pytorch_model.safetensors';
const ref = readSafetensors(referenceCase('unet').file);

function refValue(name: string): { data: Float32Array; shape: number[] } {
  const t = ref.get(name);
  if (!t) throw new Error(`reference tensor ${name} missing`);
  return { data: t.data as Float32Array, shape: t.shape };
}

/** Reference timesteps are int64, 0-d ones broadcast to the batch of 2; the UNet takes float32 [B]. */
function timesteps(name: string): { data: Float32Array; shape: number[] } {
  const t = ref.get(name)!.data as BigInt64Array;
  const values = t.length === 1 ? [t[0], t[0]] : [...t];
  return { data: Float32Array.from(values, Number), shape: [2] };
}

/** Every noise_pred case: [output, sample, timesteps, text states]. */
const CASES = [
  { out: 'noise_pred_t999', sample: 'sample', t: timesteps('timestep_t999'), text: 'encoder_hidden_states' },
  { out: 'noise_pred_t500', sample: 'sample', t: timesteps('timestep_t500'), text: 'encoder_hidden_states' },
  { out: 'noise_pred_t1', sample: 'sample', t: timesteps('timestep_t1'), text: 'encoder_hidden_states' },
  { out: 'noise_pred_t_per_sample_999_1', sample: 'sample', t: timesteps('timestep_t_per_sample_999_1'), text: 'encoder_hidden_states' },
  { out: 'noise_pred_16_text_t250', sample: 'sample_16', t: { data: Float32Array.of(250, 250), shape: [2] }, text: 'encoder_hidden_states_text' },
];

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** The UNet traced with symbolic batch and latent size; `extra` outputs come from the hook. */
async function compileUNet(unet: UNet2DConditionModel, hook?: AttentionHook, extra: () => Record<string, Tensor> = () => ({})): Promise<CompiledGraph> {
  const sample = Tensor.input('sample', [sym('B'), 4, sym('H'), sym('W')]);
  const timestep = Tensor.input('timestep', [sym('B')]);
  const text = Tensor.input('encoder_hidden_states', [sym('B'), 77, 32]);
  const noise = unet.forward(sample, timestep, text, { attentionHook: hook });
  return compile({ inputs: [sample, timestep, text], outputs: { noise, ...extra() } });
}

function feeds(c: (typeof CASES)[number]) {
  return { sample: refValue(c.sample), timestep: c.t, encoder_hidden_states: refValue(c.text) };
}

let unet: UNet2DConditionModel;
let plain: CompiledGraph;
beforeAll(async () => {
  unet = loadUNet(UNET_DIR);
  plain = await compileUNet(unet);
});

describe('parseUNetConfig', () => {
  it('widens per-block fields and reads the head count from attention_head_dim (SD 1)', () => {
    const c = unet.config;
    expect(c.block_out_channels).toEqual([32, 32, 32, 64]);
    expect(c.num_attention_heads).toEqual([8, 8, 8, 8]);
    expect(c.layers_per_block).toEqual([2, 2, 2, 2]);
    expect(c.cross_attention_dim).toEqual([32, 32, 32, 32]);
    expect(c.transformer_layers_per_block).toEqual([1, 1, 1, 1]);
    expect(c).toMatchObject({ use_linear_projection: false, norm_eps: 1e-5, flip_sin_to_cos: true, freq_shift: 0 });
  });

  it("takes SD 2's per-block attention_head_dim list as head counts; num_attention_heads wins when given", () => {
    expect(parseUNetConfig({ attention_head_dim: [5, 10, 20, 20], use_linear_projection: true }).num_attention_heads).toEqual([5, 10, 20, 20]);
    expect(parseUNetConfig({ attention_head_dim: 64, num_attention_heads: 4 }).num_attention_heads).toEqual([4, 4, 4, 4]);
  });

  it('fills diffusers defaults for absent fields (SD 1.x topology)', () => {
    const c = parseUNetConfig({});
    expect(c.block_out_channels).toEqual([320, 640, 1280, 1280]);
    expect(c.down_block_types).toEqual(['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D']);
    expect(c.cross_attention_dim).toEqual([1280, 1280, 1280, 1280]);
    expect(c.time_embedding_dim).toBeUndefined();
  });

  it('names unsupported block types and features', () => {
    const types = ['SimpleCrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'];
    expect(() => parseUNetConfig({ down_block_types: types })).toThrow(/"down_block_types" has "SimpleCrossAttnDownBlock2D", which is not supported/);
    expect(() => parseUNetConfig({ addition_embed_type: 'text_image' })).toThrow(/"addition_embed_type" "text_image" is not supported \(only null, "text_time" or "text"\)/);
    expect(parseUNetConfig({ only_cross_attention: [false, false, false, false], upcast_attention: true }).num_attention_heads).toEqual([8, 8, 8, 8]);
    expect(() => parseUNetConfig({ only_cross_attention: [true, false, false, false] })).toThrow(/only_cross_attention/);
    expect(() => parseUNetConfig({ mid_block_type: null })).toThrow(/"mid_block_type" null \(no mid block\) is not supported/);
    expect(() => parseUNetConfig({ layers_per_block: [2, 2] })).toThrow(/"layers_per_block" must be an integer from 1 to 64 or a list of 4 such integers, got \[2,2\]/);
  });
});

describe('UNet2DConditionModel against diffusers', () => {
  it.each(CASES)('$out within 1e-4 (one graph, symbolic B/H/W)', async (c) => {
    const start = performance.now();
    const { noise } = await plain.run(feeds(c));
    const ms = performance.now() - start;
    const want = refValue(c.out);
    expect(noise.shape).toEqual(want.shape);
    const err = maxAbsDiff(noise.data as Float32Array, want.data);
    console.log(`unet ${c.out}: max |Δ| ${err.toExponential(2)}, tiny UNet step [${want.shape}] ${ms.toFixed(1)} ms`);
    expect(err).toBeLessThan(1e-4);
  });
});

/** Records every call and returns the probabilities unchanged. */
class RecordingHook implements AttentionHook {
  calls: Omit<AttentionCall, 'probs'>[] = [];
  shapes: string[][] = [];
  attention(call: AttentionCall): Tensor {
    const { probs, ...rest } = call;
    this.calls.push(rest);
    this.shapes.push(probs.shape.map(dimKey));
    return probs;
  }
}

describe('attention hook', () => {
  it('sees every self- and cross-attention layer once, in order, with query-sized probabilities', async () => {
    const hook = new RecordingHook();
    await compileUNet(unet, hook);
    // 3 cross-attention down blocks × 2 layers, 1 mid, 3 up blocks × 3 layers; each a self and a cross call.
    expect(hook.calls.length).toBe(2 * (6 + 1 + 9));
    expect(hook.calls.map((c) => c.layer)).toEqual(hook.calls.map((_, i) => i));
    const count = (place: string, isCross: boolean) => hook.calls.filter((c) => c.place === place && c.isCross === isCross).length;
    expect([count('down', false), count('down', true), count('mid', false), count('mid', true), count('up', false), count('up', true)]).toEqual([6, 6, 1, 1, 9, 9]);
    hook.calls.forEach((c, i) => {
      const queries = dimKey(dimMul(c.height, c.width));
      expect(c.heads).toBe(8);
      expect(hook.shapes[i]).toEqual(['B', '8', queries, c.isCross ? '77' : queries]);
    });
    const sizes = (place: string) => [...new Set(hook.calls.filter((c) => c.place === place).map((c) => dimKey(c.height)))];
    expect(sizes('down')).toEqual(['H', '1/2*H', '1/4*H']);
    expect(sizes('mid')).toEqual(['1/8*H']);
    expect(sizes('up')).toEqual(['1/4*H', '1/2*H', 'H']);
  });

  it('returning the probabilities unchanged gives the same output as no hook', async () => {
    const hooked = await compileUNet(unet, new RecordingHook());
    for (const c of [CASES[0], CASES[4]]) {
      const [a, b] = await Promise.all([plain.run(feeds(c)), hooked.run(feeds(c))]);
      const err = maxAbsDiff(a.noise.data as Float32Array, b.noise.data as Float32Array);
      console.log(`unet ${c.out} with identity hook: max |Δ| vs fused attention ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-5);
      expect(maxAbsDiff(b.noise.data as Float32Array, refValue(c.out).data)).toBeLessThan(1e-4);
    }
  });

  it('can expose probabilities as graph outputs and replace them', async () => {
    let kept: Tensor | undefined;
    const capture: AttentionHook = {
      attention(call) {
        if (call.place === 'mid' && call.isCross) kept = call.probs;
        return undefined;
      },
    };
    const captured = await compileUNet(unet, capture, () => ({ midCross: kept! }));
    const out = await captured.run(feeds(CASES[4]));
    expect(out.midCross.shape).toEqual([2, 8, 4, 77]); // 16×16 latents → 2×2 in the mid block
    const p = out.midCross.data as Float32Array;
    for (let row = 0; row < p.length / 77; row++) {
      let s = 0;
      for (let j = 0; j < 77; j++) s += p[row * 77 + j];
      expect(s).toBeCloseTo(1, 5);
    }

    const silenceText: AttentionHook = { attention: (call) => (call.isCross ? mul(call.probs, 0) : undefined) };
    const silenced = await (await compileUNet(unet, silenceText)).run(feeds(CASES[4]));
    expect(maxAbsDiff(silenced.noise.data as Float32Array, refValue(CASES[4].out).data)).toBeGreaterThan(1e-3);
  });
});

describe('loadUNet', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'nuri-unet-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  function folderWith(name: string, edit: (tensors: Map<string, WritableTensor>) => void, fileName = WEIGHTS): string {
    const dir = join(tmp, name);
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(UNET_DIR, 'config.json'), join(dir, 'config.json'));
    const tensors = new Map<string, WritableTensor>([...readSafetensors(join(UNET_DIR, WEIGHTS))].map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape, data: t.data }]));
    edit(tensors);
    writeSafetensors(join(dir, fileName), tensors);
    return dir;
  }

  it('binds every tensor of the fixture by its diffusers name', () => {
    const names = unet.parameters().map((p) => p.name);
    expect(names.length).toBe(readSafetensors(join(UNET_DIR, WEIGHTS)).size);
    expect(names).toContain('down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight');
    expect(names).toContain('up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight');
    expect(names).toContain('mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.bias');
    expect(names).toContain('down_blocks.2.downsamplers.0.conv.weight');
    expect(names).toContain('up_blocks.0.resnets.2.conv_shortcut.weight');
    expect(names).toContain('time_embedding.linear_2.weight');
  });

  it('reports tensors that no parameter uses, and missing ones', () => {
    const extra = folderWith('extra', (t) => t.set('mid_block.attentions.0.stray.weight', { dtype: 'F32', shape: [2], data: new Float32Array(2) }));
    expect(() => loadUNet(extra)).toThrow(/cannot load UNet from .*: 1 problem\(s\)\n  unexpected tensor mid_block\.attentions\.0\.stray\.weight \[2\] in .*extra/);
    const missing = folderWith('missing', (t) => t.delete('conv_out.bias'));
    expect(() => loadUNet(missing)).toThrow(/missing tensor for conv_out\.bias/);
  });

  it('loads the fp16 variant file', async () => {
    const dir = folderWith(
      'fp16',
      (t) => {
        for (const [k, v] of t) t.set(k, { dtype: 'F16', shape: v.shape, data: float32ToFloat16(v.data as Float32Array) });
      },
      'diffusion_pytorch_model.fp16.safetensors',
    );
    const half = loadUNet(dir);
    const { noise } = await (await compileUNet(half)).run(feeds(CASES[4]));
    const err = maxAbsDiff(noise.data as Float32Array, refValue(CASES[4].out).data);
    console.log(`unet fp16 weights, ${CASES[4].out}: max |Δ| ${err.toExponential(2)}`);
    expect(err).toBeLessThan(5e-3);
  });
});

describe('SD 2-style topology', () => {
  it('builds linear projections and per-block head counts, and runs', async () => {
    const sd2 = new UNet2DConditionModel(
      parseUNetConfig({
        block_out_channels: [32, 64],
        down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'],
        up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'],
        attention_head_dim: [2, 4],
        cross_attention_dim: 32,
        use_linear_projection: true,
        layers_per_block: 1,
      }),
    );
    sd2.init(new Generator(7));
    const shapes = new Map(sd2.parameters().map((p) => [p.name, p.shape]));
    expect(shapes.get('down_blocks.0.attentions.0.proj_in.weight')).toEqual([32, 32]);
    expect(shapes.get('mid_block.attentions.0.proj_out.weight')).toEqual([64, 64]);
    expect(shapes.get('up_blocks.1.resnets.1.conv1.weight')).toEqual([32, 64, 3, 3]);

    const hook = new RecordingHook();
    await compileUNet(sd2, hook);
    expect([...new Set(hook.calls.map((c) => `${c.place}:${c.heads}`))]).toEqual(['down:2', 'mid:4', 'up:2']);

    const graph = await compileUNet(sd2);
    const size = 1 * 4 * 16 * 8;
    const sample = new Float32Array(new Generator(8).randn(size));
    const text = new Float32Array(new Generator(9).randn(77 * 32));
    const { noise } = await graph.run({ sample: { data: sample, shape: [1, 4, 16, 8] }, timestep: { data: Float32Array.of(10), shape: [1] }, encoder_hidden_states: { data: text, shape: [1, 77, 32] } });
    expect(noise.shape).toEqual([1, 4, 16, 8]);
    expect((noise.data as Float32Array).every(Number.isFinite)).toBe(true);
  });
});
