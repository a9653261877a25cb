// AutoencoderTiny (TAESD) against diffusers 0.27.2 on fixtures/tiny-taesd (case l of reference-2).
import { describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { bytesToLatents, latentsToBytes, tinyDownscale } from '../../src/models/autoencoder-tiny.ts';
import { loadAutoencoderTiny } from '../../src/models/checkpoint/components.ts';
import { parseAutoencoderTinyConfig } from '../../src/models/checkpoint/autoencoder-tiny-config.ts';
import { TinyVaeRunner } from '../../src/models/tiny-vae-runner.ts';
import type { Shape4 } from '../../src/models/vae-runner.ts';
import { FIXTURES, referenceCase } from '../fixtures.ts';
import { maxAbsDiff } from '../schedulers/reference.ts';

const TINY_TAESD = join(FIXTURES, 'tiny-taesd');
const ref = readSafetensors(referenceCase('taesd').file);
const tensor = (name: string) => {
  const t = ref.get(name);
  if (!t) throw new Error(`reference tensor ${name} missing`);
  return { data: t.data as Float32Array, shape: t.shape as unknown as Shape4 };
};

describe('AutoencoderTiny', () => {
  const runner = new TinyVaeRunner(loadAutoencoderTiny(TINY_TAESD));

  it('reads the fixture config', () => {
    expect(runner.config).toEqual({
      in_channels: 3,
      out_channels: 3,
      latent_channels: 4,
      encoder_block_out_channels: [8, 8, 8, 8],
      decoder_block_out_channels: [8, 8, 8, 8],
      num_encoder_blocks: [1, 3, 3, 3],
      num_decoder_blocks: [3, 3, 3, 1],
      latent_magnitude: 3,
      latent_shift: 0.5,
      scaling_factor: 1,
    });
    expect(tinyDownscale(runner.config)).toBe(8);
  });

  it('encodes like diffusers (case l: encode(image).latents, ~1e-5)', async () => {
    const image = tensor('image');
    const out = await runner.encodeRaw(image.data, image.shape);
    expect(out.shape).toEqual(tensor('latents').shape);
    expect(maxAbsDiff(out.data, tensor('latents').data)).toBeLessThan(1e-5);
  });

  it('decodes like diffusers (case l: decode(latents_to_decode).sample, ~1e-5)', async () => {
    const z = tensor('latents_to_decode');
    const out = await runner.decodeRaw(z.data, z.shape);
    expect(out.shape).toEqual([1, 3, 32, 32]);
    expect(maxAbsDiff(out.data, tensor('decoded').data)).toBeLessThan(1e-5);
  });

  it("round-trips through uint8 latents like forward() (a byte may flip by one on a boundary)", async () => {
    const image = tensor('image');
    const { bytes, decoded } = await runner.roundTrip(image.data, image.shape);
    const expected = ref.get('scaled_latents_u8')!.data as Uint8Array;
    const flips = bytes.filter((b, i) => b !== expected[i]).length;
    expect(maxAbsDiff(bytes, expected)).toBeLessThanOrEqual(1);
    expect(flips).toBeLessThanOrEqual(2);
    // With identical bytes the decode is as exact as decode(); a flipped byte moves it a little.
    expect(maxAbsDiff(decoded.data, tensor('roundtrip').data)).toBeLessThan(flips ? 5e-2 : 1e-5);
  });

  it('maps latents to bytes and back within one step of 6/255', () => {
    const config = runner.config;
    const z = Float32Array.of(-4, -3, -0.01, 0, 0.01, 2.99, 3, 7);
    const bytes = latentsToBytes(z, config);
    expect([...bytes]).toEqual([0, 0, 127, 128, 128, 255, 255, 255]);
    const back = bytesToLatents(bytes, config);
    for (const i of [2, 3, 4, 5]) expect(Math.abs(back[i] - z[i])).toBeLessThanOrEqual(3 / 255 + 1e-6);
  });

  it('pipeline-style decode maps to [0, 1] and refuses non-finite latents', async () => {
    const z = tensor('latents_to_decode');
    const out = await runner.decodeLatents(z.data, z.shape);
    const raw = tensor('decoded').data;
    expect(maxAbsDiff(out.data, raw.map((x) => Math.min(1, Math.max(0, x / 2 + 0.5))))).toBeLessThan(1e-5);
    const bad = z.data.slice();
    bad[3] = Number.NaN;
    await expect(runner.decodeLatents(bad, z.shape)).rejects.toThrow(/non-finite/);
  });
});

describe('AutoencoderTiny config and weights', () => {
  it('applies TAESD defaults and refuses what diffusers cannot run', () => {
    const c = parseAutoencoderTinyConfig({});
    expect(c.encoder_block_out_channels).toEqual([64, 64, 64, 64]);
    expect(c.num_decoder_blocks).toEqual([3, 3, 3, 1]);
    expect(() => parseAutoencoderTinyConfig({ act_fn: 'silu' })).toThrow(/"act_fn" "silu" is not supported/);
    expect(() => parseAutoencoderTinyConfig({ encoder_block_out_channels: [8, 16, 16, 16] })).toThrow(/one width for every level/);
    expect(() => parseAutoencoderTinyConfig({ num_encoder_blocks: [1, 3, 3] })).toThrow(/encoder_block_out_channels" needs one entry per level \(3\)/);
    expect(() => parseAutoencoderTinyConfig({ num_decoder_blocks: [3, 3, 3, 1e9] })).toThrow(/num_decoder_blocks/);
    expect(() => parseAutoencoderTinyConfig({ latent_magnitude: 0 })).toThrow(/latent_magnitude/);
  });

  it('names the config file and the tensors when they disagree with the weights', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-taesd-'));
    copyFileSync(join(TINY_TAESD, 'diffusion_pytorch_model.safetensors'), join(dir, 'diffusion_pytorch_model.safetensors'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ _class_name: 'AutoencoderTiny', block_out_channels: [8, 8, 8, 8], num_decoder_blocks: [3, 3, 3, 2] }));
    expect(() => loadAutoencoderTiny(dir)).toThrow(/missing tensor for decoder\.layers\.18\.conv\.0\.weight[\s\S]*unexpected tensor decoder\.layers\.18\.bias/);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ latent_shift: 'half' }));
    expect(() => loadAutoencoderTiny(dir)).toThrow(new RegExp(`${dir}/config.json.*latent_shift`));
  });
});
