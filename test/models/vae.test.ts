import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Generator, Tensor, compile } from '../../src/engine/index.ts';
import { SafetensorsFile, float32ToFloat16, readSafetensors, writeSafetensors, type WritableTensor } from '../../src/engine/safetensors.ts';
import { AutoencoderKL, vaeDownscale } from '../../src/models/vae.ts';
import { loadVae } from '../../src/models/checkpoint/components.ts';
import { parseVaeConfig } from '../../src/models/checkpoint/vae-config.ts';
import { type Shape4, VaeRunner, scaleLatents, unscaleLatents } from '../../src/models/vae-runner.ts';
import { TINY_SD, referenceCase } from '../fixtures.ts';

const VAE_DIR = join(TINY_SD, 'vae');
const WEIGHTS = 'diffusion_pytorch_model.safetensors';
const ref = readSafetensors(referenceCase('vae').file);
const refTensor = (name: string) => {
  const t = ref.get(name);
  if (!t) throw new Error(`reference tensor ${name} missing`);
  return { data: t.data as Float32Array, shape: t.shape as unknown as Shape4 };
};

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'nuri-vae-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of the fixture VAE folder whose weights file holds `edit(original tensors)`. */
function vaeFolderWith(name: string, edit: (tensors: Map<string, WritableTensor>) => void, fileName = WEIGHTS): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(VAE_DIR, 'config.json'), join(dir, 'config.json'));
  const tensors = new Map<string, WritableTensor>([...readSafetensors(join(VAE_DIR, WEIGHTS))].map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape, data: t.data }]));
  edit(tensors);
  writeSafetensors(join(dir, fileName), tensors);
  return dir;
}

describe('parseVaeConfig', () => {
  it('reads the fixture config', () => {
    const c = loadVae(VAE_DIR).config;
    expect(c).toMatchObject({
      in_channels: 3,
      out_channels: 3,
      block_out_channels: [32, 32, 32, 32],
      layers_per_block: 2,
      latent_channels: 4,
      norm_num_groups: 32,
      sample_size: 256,
      scaling_factor: 0.18215,
      use_quant_conv: true,
      use_post_quant_conv: true,
      mid_block_add_attention: true,
    });
    expect(c.shift_factor).toBeUndefined();
    expect(c.latents_mean).toBeUndefined();
    expect(vaeDownscale(c)).toBe(8);
  });

  it("applies diffusers' defaults to absent fields", () => {
    const c = parseVaeConfig({});
    expect(c).toMatchObject({ block_out_channels: [64], layers_per_block: 1, latent_channels: 4, scaling_factor: 0.18215, norm_num_groups: 32 });
    expect(parseVaeConfig({ shift_factor: 0.0609, scaling_factor: 1.5305 }).shift_factor).toBe(0.0609);
  });

  it('rejects what it cannot build, naming the field', () => {
    expect(() => parseVaeConfig({ down_block_types: ['DownEncoderBlock2D', 'AttnDownEncoderBlock2D'], up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'], block_out_channels: [32, 32] })).toThrow(/AttnDownEncoderBlock2D/);
    expect(() => parseVaeConfig({ block_out_channels: [32, 64] })).toThrow(/one entry per block_out_channels/);
    expect(() => parseVaeConfig({ layers_per_block: 0 })).toThrow(/layers_per_block/);
    expect(() => parseVaeConfig({ block_out_channels: [48] })).toThrow(/norm_num_groups/);
    expect(() => parseVaeConfig({ act_fn: 'gelu' })).toThrow(/act_fn/);
    expect(() => parseVaeConfig({ latents_mean: [0, 0, 0, 0] })).toThrow(/together/);
  });
});

describe('loadVae', () => {
  it("binds every tensor of the checkpoint under diffusers' names", () => {
    const vae = loadVae(VAE_DIR);
    const file = SafetensorsFile.open(join(VAE_DIR, WEIGHTS));
    expect(vae.parameters().map((p) => p.name).sort()).toEqual(file.names().sort());
  });

  it('names missing, extra and wrong-shaped tensors in one error', () => {
    const dir = vaeFolderWith('broken', (t) => {
      t.delete('decoder.conv_out.bias');
      t.set('decoder.spare.weight', { dtype: 'F32', shape: [2], data: new Float32Array(2) });
      t.set('encoder.conv_in.bias', { dtype: 'F32', shape: [31], data: new Float32Array(31) });
    });
    let message = '';
    try {
      loadVae(dir);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/3 problem/);
    expect(message).toMatch(/missing tensor for decoder\.conv_out\.bias \[3\]/);
    expect(message).toMatch(/unexpected tensor decoder\.spare\.weight \[2\]/);
    expect(message).toMatch(/expected shape \[32\] for encoder\.conv_in\.bias, found \[31\]/);
  });

  it('says which files it looked for', () => {
    const dir = join(tmp, 'empty');
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(VAE_DIR, 'config.json'), join(dir, 'config.json'));
    expect(() => loadVae(dir)).toThrow(/diffusion_pytorch_model\.safetensors or diffusion_pytorch_model\.fp16\.safetensors/);
  });
});

describe('AutoencoderKL against diffusers', () => {
  const runner = new VaeRunner(loadVae(VAE_DIR));

  it('encodes to the reference mean, std and logvar (1e-4)', async () => {
    const image = refTensor('image');
    const enc = await runner.encodeImage(image.data, image.shape);
    expect(enc.shape).toEqual([1, 4, 16, 16]);
    for (const k of ['mean', 'std', 'logvar'] as const) expect(maxAbsDiff(enc[k], refTensor(`latent_${k}`).data)).toBeLessThan(1e-4);
  });

  it('decodes to the reference image (1e-4)', async () => {
    const latents = refTensor('latents_to_decode');
    const dec = await runner.decodeRaw(latents.data, latents.shape);
    expect(dec.shape).toEqual([1, 3, 128, 128]);
    expect(maxAbsDiff(dec.data, refTensor('decoded').data)).toBeLessThan(1e-4);
  });

  it('decodeLatents divides by scaling_factor and maps to [0, 1] as the pipeline does', async () => {
    const latents = refTensor('latents_to_decode');
    const scaled = latents.data.map((v) => v * 0.18215);
    const image = await runner.decodeLatents(scaled, latents.shape);
    const expected = refTensor('decoded').data.map((x) => Math.min(1, Math.max(0, x / 2 + 0.5)));
    expect(maxAbsDiff(image.data, expected)).toBeLessThan(1e-4);
    const unscaled = await runner.decodeLatents(latents.data, latents.shape, { scale: false });
    expect(maxAbsDiff(unscaled.data, expected)).toBeLessThan(1e-4);
  });

  it('imageToLatents gives scaling_factor · mean, or a seeded sample', async () => {
    const image = refTensor('image');
    const mean = refTensor('latent_mean').data;
    const std = refTensor('latent_std').data;
    const z = await runner.imageToLatents(image.data, image.shape);
    expect(maxAbsDiff(z.data, mean.map((m) => m * 0.18215))).toBeLessThan(1e-5);
    const noise = new Generator(7).randn(mean.length);
    const sampled = await runner.imageToLatents(image.data, image.shape, { rng: new Generator(7) });
    expect(maxAbsDiff(sampled.data, mean.map((m, i) => (m + std[i] * noise[i]) * 0.18215))).toBeLessThan(1e-5);
  });

  it('one compiled decoder serves two sizes and a batch', async () => {
    const session = (await runner.compiledDecoder()).session;
    const latents = refTensor('latents_to_decode');
    const other = new Generator(3).randn(2 * 4 * 8 * 12);
    const small = await runner.decodeRaw(other, [2, 4, 8, 12]);
    expect(small.shape).toEqual([2, 3, 64, 96]);
    expect((await runner.compiledDecoder()).session).toBe(session);

    // The same model traced with fixed sizes: an independent graph, the same numbers.
    const fixed = Tensor.input('latents', [2, 4, 8, 12]);
    const fixedGraph = await compile({ inputs: [fixed], outputs: { image: runner.vae.decode(fixed) } });
    expect(fixedGraph.session).not.toBe(session);
    const expected = (await fixedGraph.run({ latents: { data: other, shape: [2, 4, 8, 12] } })).image.data as Float32Array;
    expect(maxAbsDiff(small.data, expected)).toBeLessThan(1e-5);

    // A batch of two at the reference size: the first item is the reference decode.
    const pair = new Float32Array(2 * latents.data.length);
    pair.set(latents.data);
    pair.set(latents.data.map((v) => -v), latents.data.length);
    const both = await runner.decodeRaw(pair, [2, 4, 16, 16]);
    expect(maxAbsDiff(both.data.subarray(0, 3 * 128 * 128), refTensor('decoded').data)).toBeLessThan(1e-4);
  });

  it('checks sizes before running', async () => {
    await expect(runner.encodeImage(new Float32Array(3 * 60 * 64), [1, 3, 60, 64])).rejects.toThrow(/multiples of 8/);
    await expect(runner.decodeRaw(new Float32Array(10), [1, 4, 4, 4])).rejects.toThrow(/do not fill/);
    await expect(runner.decodeRaw(new Float32Array(48), [1, 3, 4, 4])).rejects.toThrow(/4 channels/);
  });
});

describe('checkpoint variants', () => {
  const latents = refTensor('latents_to_decode');

  it('accepts the older query/key/value/proj_attn names, also as 1×1 convs', async () => {
    const legacy: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
    const dir = vaeFolderWith('legacy', (t) => {
      for (const [name, tensor] of [...t]) {
        const m = /^(.*\.attentions\.0\.)(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(name);
        if (!m) continue;
        t.delete(name);
        const shape = m[3] === 'weight' ? [...tensor.shape, 1, 1] : tensor.shape;
        t.set(`${m[1]}${legacy[m[2]]}.${m[3]}`, { ...tensor, shape });
      }
    });
    const dec = await new VaeRunner(loadVae(dir)).decodeRaw(latents.data, latents.shape);
    expect(maxAbsDiff(dec.data, refTensor('decoded').data)).toBeLessThan(1e-4);
  });

  it('loads fp16 weights (diffusion_pytorch_model.fp16.safetensors)', async () => {
    const dir = vaeFolderWith(
      'fp16',
      (t) => {
        for (const [name, tensor] of t) t.set(name, { dtype: 'F16', shape: tensor.shape, data: float32ToFloat16(tensor.data as Float32Array) });
      },
      'diffusion_pytorch_model.fp16.safetensors',
    );
    const vae = loadVae(dir, { variant: 'fp16' });
    const dec = await new VaeRunner(vae).decodeRaw(latents.data, latents.shape);
    expect(maxAbsDiff(dec.data, refTensor('decoded').data)).toBeLessThan(2e-2);
  });
});

describe('latent scaling', () => {
  it('scaleLatents and unscaleLatents are inverses, with shift and per-channel statistics', () => {
    const shape: Shape4 = [1, 2, 1, 2];
    const z = Float32Array.of(1, 2, 3, 4);
    const plain = parseVaeConfig({ latent_channels: 2 });
    expect([...scaleLatents(z, shape, plain)]).toEqual([...z].map((v) => Math.fround(v * 0.18215)));
    const shifted = parseVaeConfig({ latent_channels: 2, scaling_factor: 1.5, shift_factor: 0.5 });
    expect([...scaleLatents(z, shape, shifted)]).toEqual([0.75, 2.25, 3.75, 5.25]);
    const stats = parseVaeConfig({ latent_channels: 2, scaling_factor: 0.5, latents_mean: [1, -1], latents_std: [2, 4] });
    expect([...scaleLatents(z, shape, stats)]).toEqual([0, 0.25, 0.5, 0.625]);
    for (const c of [plain, shifted, stats]) expect(maxAbsDiff(unscaleLatents(scaleLatents(z, shape, c), shape, c), z)).toBeLessThan(1e-6);
  });

  it('builds without weights for training from scratch', () => {
    const vae = new AutoencoderKL(parseVaeConfig({ block_out_channels: [32, 64], down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'], up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'] }));
    vae.init(new Generator(0));
    const names = vae.parameters().map((p) => p.name);
    expect(names).toContain('encoder.down_blocks.0.downsamplers.0.conv.weight');
    expect(names).toContain('encoder.down_blocks.1.resnets.0.conv_shortcut.weight');
    expect(names).toContain('decoder.up_blocks.1.resnets.0.conv_shortcut.weight');
    expect(names).toContain('decoder.mid_block.attentions.0.to_out.0.weight');
    expect(names.some((n) => n.startsWith('decoder.up_blocks.1.upsamplers'))).toBe(false);
  });
});
