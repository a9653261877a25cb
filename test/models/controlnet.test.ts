// ControlNetModel and the UNet given its residuals, against diffusers on tiny-controlnet / tiny-sd
// (reference-2 case n, controlnet_forward), and the single-file (original `control_model.*`) layout.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CompiledGraph } from '../../src/engine/index.ts';
import { readSafetensors, writeSafetensors, type WritableTensor } from '../../src/engine/safetensors.ts';
import { readImage } from '../../src/io/image.ts';
import { controlResidualName } from '../../src/models/controlnet.ts';
import { parseControlNetConfig } from '../../src/models/checkpoint/controlnet-config.ts';
import { loadControlNet } from '../../src/models/controlnet-load.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { compileControlNet } from '../../src/pipelines/controlnet.ts';
import { compileUNet } from '../../src/pipelines/stable-diffusion.ts';
import { FIXTURES, TINY_SD, referenceCase } from '../fixtures.ts';
import { maxAbsDiff } from '../schedulers/reference.ts';
import { Mutator, cleanOutcome } from '../fuzz/mutate.ts';

const CONTROLNET_DIR = join(FIXTURES, 'tiny-controlnet');
const CASE = referenceCase('controlnet_forward');
const ref = readSafetensors(CASE.file);
const TOLERANCE = 1e-5; // the case's: fp32, ~1e-5 abs
const RESIDUALS = [...Array.from({ length: 12 }, (_, i) => controlResidualName(i)), controlResidualName('mid')];

function refValue(name: string): { data: Float32Array; shape: number[] } {
  const t = ref.get(name);
  if (!t) throw new Error(`reference tensor ${name} missing`);
  return { data: t.data as Float32Array, shape: t.shape };
}

/** control_image_u8 [H, W, 3] → NCHW / 255, as diffusers' control image processor gives it. */
function controlImage(): { data: Float32Array; shape: number[] } {
  const { data, shape } = ref.get('control_image_u8')!;
  const [h, w] = shape;
  const out = new Float32Array(3 * h * w);
  for (let c = 0; c < 3; c++) for (let i = 0; i < h * w; i++) out[c * h * w + i] = (data as Uint8Array)[i * 3 + c] / 255;
  return { data: out, shape: [1, 3, h, w] };
}

const timestep = { data: Float32Array.from(ref.get('timestep')!.data as BigInt64Array, Number), shape: [1] };

function controlFeeds(scale: number) {
  return {
    sample: refValue('sample'),
    timestep,
    encoder_hidden_states: refValue('encoder_hidden_states'),
    controlnet_cond: controlImage(),
    conditioning_scale: { data: Float32Array.of(scale), shape: [1] },
  };
}

let graph: CompiledGraph;
beforeAll(async () => {
  graph = await compileControlNet(loadControlNet(CONTROLNET_DIR), [77, 32], {});
});

describe('ControlNetModel against diffusers (tiny-controlnet)', () => {
  it('the control PNG read as an image is control_image_u8 / 255', async () => {
    const image = await readImage(CASE.control_image_png ? join(FIXTURES, CASE.control_image_png as string) : '');
    expect(maxAbsDiff(image.data, controlImage().data)).toBe(0);
  });

  it('12 down residuals and the mid residual at scale 1', async () => {
    const out = await graph.run(controlFeeds(1));
    const errors = RESIDUALS.map((name) => {
      expect(out[name].shape).toEqual(refValue(name).shape);
      return maxAbsDiff(out[name].data as Float32Array, refValue(name).data);
    });
    console.log(`controlnet residuals: max |Δ| ${Math.max(...errors).toExponential(2)}`);
    for (const e of errors) expect(e).toBeLessThan(TOLERANCE);
    // The zero convs are re-initialised in the fixture: the residuals are not zero.
    expect(Math.max(...(out.mid_block_res_sample.data as Float32Array).map(Math.abs))).toBeGreaterThan(1e-2);
  });

  it('the mid residual at scale 0.5', async () => {
    const out = await graph.run(controlFeeds(0.5));
    const err = maxAbsDiff(out.mid_block_res_sample.data as Float32Array, refValue('mid_block_res_sample_scale0.5').data);
    expect(err).toBeLessThan(TOLERANCE);
  });

  it('the UNet adds the residuals to its skips and mid-block output', async () => {
    const unet = loadUNet(join(TINY_SD, 'unet'));
    const controlled = await compileUNet(unet, [77, 32], {}, { controlResiduals: true });
    const feeds = { sample: refValue('sample'), timestep, encoder_hidden_states: refValue('encoder_hidden_states') };
    const residuals = Object.fromEntries(RESIDUALS.map((name) => [name, refValue(name)]));
    const { noise_pred } = await controlled.run({ ...feeds, ...residuals });
    const err = maxAbsDiff(noise_pred.data as Float32Array, refValue('unet_noise_pred_with_residuals').data);
    console.log(`unet with controlnet residuals: max |Δ| ${err.toExponential(2)}`);
    expect(err).toBeLessThan(TOLERANCE);
  });
});

describe('parseControlNetConfig', () => {
  it('fuzzed configs: a clean error naming the folder, or a ControlNet whose tensors all bound', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-controlnet-fuzz-'));
    try {
      copyFileSync(join(CONTROLNET_DIR, 'diffusion_pytorch_model.safetensors'), join(dir, 'diffusion_pytorch_model.safetensors'));
      const original = JSON.parse(readFileSync(join(CONTROLNET_DIR, 'config.json'), 'utf8')) as Record<string, unknown>;
      const fields = ['conditioning_embedding_out_channels', 'conditioning_channels', 'controlnet_conditioning_channel_order', 'global_pool_conditions', 'block_out_channels', 'layers_per_block', 'addition_embed_type', 'down_block_types'];
      const problems: string[] = [];
      for (let i = 0; i < 200; i++) {
        const m = new Mutator(5000 + i);
        writeFileSync(join(dir, 'config.json'), i % 5 === 0 ? m.mutateText(JSON.stringify(original)) : JSON.stringify(m.mutateJson({ ...original }, fields)));
        const problem = cleanOutcome(dir, () => loadControlNet(dir));
        if (problem) problems.push(`case ${i}: ${problem}`);
      }
      expect(problems.slice(0, 5)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });


  it('reads the down half as a UNet config and the conditioning fields', () => {
    const c = parseControlNetConfig({ block_out_channels: [32, 64], down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], cross_attention_dim: 32, conditioning_embedding_out_channels: [8, 16] });
    expect(c.unet.block_out_channels).toEqual([32, 64]);
    expect(c.unet.up_block_types).toEqual(['UpBlock2D', 'CrossAttnUpBlock2D']);
    expect(c).toMatchObject({ conditioning_channels: 3, conditioning_embedding_out_channels: [8, 16], controlnet_conditioning_channel_order: 'rgb' });
  });

  it('names what it does not support', () => {
    expect(() => parseControlNetConfig({ global_pool_conditions: true })).toThrow(/"global_pool_conditions" true is not supported/);
    expect(() => parseControlNetConfig({ controlnet_conditioning_channel_order: 'rbg' })).toThrow(/"controlnet_conditioning_channel_order" must be one of "rgb", "bgr", got "rbg"/);
    expect(() => parseControlNetConfig({ conditioning_embedding_out_channels: [8, 0] })).toThrow(/"conditioning_embedding_out_channels" must be a list of 1 to 8 integers from 1 to 16384, got \[8,0\]/);
  });
});

/**
 * The original ControlNet key of a diffusers name (tiny-sd's layout: 2 layers per level, 4 levels),
 * written out independently of the loader's mapping so the test checks it.
 */
function originalKey(name: string): string {
  const hint: Record<string, number> = { conv_in: 0, conv_out: 14 };
  let m: RegExpExecArray | null;
  if ((m = /^controlnet_cond_embedding\.(conv_in|conv_out|blocks\.(\d+))\.(.+)$/.exec(name))) {
    return `input_hint_block.${m[2] === undefined ? hint[m[1]] : 2 * Number(m[2]) + 2}.${m[3]}`;
  }
  if ((m = /^controlnet_down_blocks\.(\d+)\.(.+)$/.exec(name))) return `zero_convs.${m[1]}.0.${m[2]}`;
  if ((m = /^controlnet_mid_block\.(.+)$/.exec(name))) return `middle_block_out.0.${m[1]}`;
  if ((m = /^time_embedding\.linear_([12])\.(.+)$/.exec(name))) return `time_embed.${m[1] === '1' ? 0 : 2}.${m[2]}`;
  if ((m = /^conv_in\.(.+)$/.exec(name))) return `input_blocks.0.0.${m[1]}`;
  const resnet = (rest: string) => rest.replace('norm1', 'in_layers.0').replace('conv1', 'in_layers.2').replace('norm2', 'out_layers.0').replace('conv2', 'out_layers.3').replace('time_emb_proj', 'emb_layers.1').replace('conv_shortcut', 'skip_connection');
  if ((m = /^down_blocks\.(\d)\.(resnets|attentions)\.(\d)\.(.+)$/.exec(name))) {
    const block = 1 + 3 * Number(m[1]) + Number(m[3]);
    return m[2] === 'resnets' ? `input_blocks.${block}.0.${resnet(m[4])}` : `input_blocks.${block}.1.${m[4]}`;
  }
  if ((m = /^down_blocks\.(\d)\.downsamplers\.0\.conv\.(.+)$/.exec(name))) return `input_blocks.${3 + 3 * Number(m[1])}.0.op.${m[2]}`;
  if ((m = /^mid_block\.resnets\.(\d)\.(.+)$/.exec(name))) return `middle_block.${2 * Number(m[1])}.${resnet(m[2])}`;
  if ((m = /^mid_block\.attentions\.0\.(.+)$/.exec(name))) return `middle_block.1.${m[1]}`;
  throw new Error(`no original key for ${name}`);
}

describe('single-file ControlNet (original key layout)', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'nuri-controlnet-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  const base = () => loadUNet(join(TINY_SD, 'unet')).config;
  const diffusersTensors = () => readSafetensors(join(CONTROLNET_DIR, 'diffusion_pytorch_model.safetensors'));

  function writeOriginal(file: string, prefix: string, edit: (t: Map<string, WritableTensor>) => void = () => {}): string {
    const tensors = new Map<string, WritableTensor>([...diffusersTensors()].map(([k, t]) => [prefix + originalKey(k), { dtype: t.dtype, shape: t.shape, data: t.data }]));
    edit(tensors);
    const path = join(tmp, file);
    writeSafetensors(path, tensors);
    return path;
  }

  it.each(['control_model.', ''])('reads control_model.* keys (prefix "%s") with the base UNet config and gives the folder\'s residuals', async (prefix) => {
    const net = loadControlNet(writeOriginal(`cn${prefix ? '-prefixed' : ''}.safetensors`, prefix), { base: base() });
    expect(net.config.conditioning_embedding_out_channels).toEqual([8, 16, 16, 32]);
    const out = await (await compileControlNet(net, [77, 32], {})).run(controlFeeds(1));
    const want = await graph.run(controlFeeds(1));
    for (const name of RESIDUALS) expect(maxAbsDiff(out[name].data as Float32Array, want[name].data as Float32Array)).toBe(0);
  });

  it("ignores the SD model that ControlNet 1.0's full files also carry (keys outside control_model.*)", () => {
    const full = writeOriginal('full.safetensors', 'control_model.', (t) => t.set('model.diffusion_model.out.2.bias', { dtype: 'F32', shape: [4], data: new Float32Array(4) }));
    expect(loadControlNet(full, { base: base() }).parameters().length).toBe(diffusersTensors().size);
  });

  it('refuses a file without the base config, a foreign tensor, and a missing one, naming them', () => {
    const path = writeOriginal('good.safetensors', 'control_model.');
    expect(() => loadControlNet(path)).toThrow(/base model's UNet config is needed/);
    const stray = writeOriginal('stray.safetensors', 'control_model.', (t) => t.set('control_model.output_blocks.0.0.in_layers.0.weight', { dtype: 'F32', shape: [2], data: new Float32Array(2) }));
    expect(() => loadControlNet(stray, { base: base() })).toThrow(/cannot load ControlNet from .*stray\.safetensors: 1 problem\(s\)\n  unexpected tensor control_model\.output_blocks\.0\.0\.in_layers\.0\.weight \[2\]/);
    const missing = writeOriginal('missing.safetensors', 'control_model.', (t) => t.delete('control_model.zero_convs.11.0.bias'));
    expect(() => loadControlNet(missing, { base: base() })).toThrow(/missing tensor for controlnet_down_blocks\.11\.bias/);
  });
});
