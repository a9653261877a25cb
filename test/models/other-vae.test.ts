// `--vae PATH`: which VAE a folder or file is, how its weights bind, and the errors for what is not one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors, type WritableTensor } from '../../src/engine/safetensors.ts';
import { loadOtherVae } from '../../src/models/other-vae.ts';
import { loadVae } from '../../src/models/checkpoint/components.ts';
import { FIXTURES, TINY_SD } from '../fixtures.ts';

const TINY_TAESD = join(FIXTURES, 'tiny-taesd');
const SINGLE = join(FIXTURES, 'tiny-sd-single.safetensors');
const modelVae = loadVae(join(TINY_SD, 'vae'));

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'nuri-other-vae-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type WithParameters = { parameters(): { name: string; value(): Float32Array }[] };

/** The names of the parameters whose values differ between two VAEs (byte comparison: deep equality is slow here). */
function differing(a: WithParameters, b: WithParameters): string[] {
  const bytes = (v: Float32Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  const other = new Map(b.parameters().map((p) => [p.name, p]));
  const names = a.parameters().filter((p) => !other.has(p.name) || !bytes(p.value()).equals(bytes(other.get(p.name)!.value()))).map((p) => p.name);
  expect(a.parameters().length).toBe(other.size);
  return names;
}

/** The single file's VAE tensors under their original names, without `first_stage_model.` (a downloaded VAE file). */
function standaloneOriginalVae(path: string): void {
  const tensors = new Map<string, WritableTensor>();
  for (const [name, t] of readSafetensors(SINGLE)) {
    if (name.startsWith('first_stage_model.')) tensors.set(name.slice('first_stage_model.'.length), { dtype: t.dtype, shape: t.shape, data: t.data });
  }
  writeSafetensors(path, tensors);
}

describe('loadOtherVae', () => {
  it('tells an AutoencoderTiny folder from an AutoencoderKL folder (or a model folder, which lends its vae/)', () => {
    expect(loadOtherVae(TINY_TAESD, modelVae.config).kind).toBe('tiny');
    for (const path of [join(TINY_SD, 'vae'), TINY_SD]) {
      const other = loadOtherVae(path, modelVae.config);
      expect(other.kind).toBe('kl');
      expect(differing(other.vae, modelVae)).toEqual([]);
    }
  });

  it('binds a VAE file in the original layout, alone or inside a whole checkpoint, to the same weights', () => {
    const standalone = join(tmp, 'vae-original.safetensors');
    standaloneOriginalVae(standalone);
    for (const path of [standalone, SINGLE]) {
      const other = loadOtherVae(path, modelVae.config);
      expect(other.kind).toBe('kl');
      expect(differing(other.vae, modelVae)).toEqual([]);
    }
  });

  it('binds a VAE file with diffusers names, with the model\'s VAE config', () => {
    const other = loadOtherVae(join(TINY_SD, 'vae', 'diffusion_pytorch_model.safetensors'), modelVae.config);
    expect(other.kind).toBe('kl');
    expect(differing(other.vae, modelVae)).toEqual([]);
  });

  it('refuses what is not a VAE, naming the file', () => {
    const unet = join(TINY_SD, 'unet', 'diffusion_pytorch_model.safetensors');
    expect(() => loadOtherVae(unet, modelVae.config)).toThrow(`${unet} is neither an AutoencoderKL`);
    expect(() => loadOtherVae(join(TINY_SD, 'unet'), modelVae.config)).toThrow(/unet\/config\.json: _class_name "UNet2DConditionModel" is not a VAE/);
    const taesdFile = join(TINY_TAESD, 'diffusion_pytorch_model.safetensors');
    expect(() => loadOtherVae(taesdFile, modelVae.config)).toThrow(/an AutoencoderTiny: give its folder, with config\.json/);
    expect(() => loadOtherVae(join(tmp, 'nothing'), modelVae.config)).toThrow(/no such VAE folder or file/);
  });

  it('refuses a VAE whose latents do not fit the model', () => {
    const fourX = { ...modelVae.config, block_out_channels: [32, 32, 32] };
    expect(() => loadOtherVae(TINY_TAESD, fourX)).toThrow(/4 latent channels at 1\/8 of the picture's size, the model's has 4 at 1\/4/);
  });
});
