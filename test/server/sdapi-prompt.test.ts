// The A1111 layer's pure parts: `<lora:…>` tags, sampler names and model titles as clients send them.

import { describe, expect, it } from 'vitest';
import { findModel, vaeNearCheckpoint } from '../../src/server/sdapi/catalog.ts';
import { extractNetworks } from '../../src/server/sdapi/extra-networks.ts';
import { resolveSampler } from '../../src/server/sdapi/samplers.ts';

describe('extractNetworks', () => {
  it('takes <lora:name:weight> tags out of the prompt, weight 1 when absent', () => {
    expect(extractNetworks('a cat, <lora:cat-v2:0.7>, on a hat <lora:style>')).toEqual({
      prompt: 'a cat, on a hat',
      loras: [
        { name: 'cat-v2', weight: 0.7 },
        { name: 'style', weight: 1 },
      ],
      ignored: [],
    });
  });

  it('reads <lyco:…> and the text-encoder:UNet weight form (first weight), the last tag of a name winning', () => {
    expect(extractNetworks('<lyco:a:0.5:0.9> x <lora:a:-0.25>').loras).toEqual([{ name: 'a', weight: -0.25 }]);
  });

  it('drops what it cannot apply, saying so', () => {
    const r = extractNetworks('<hypernet:anime:1> a dog <lora:x:lots>');
    expect(r.prompt).toBe('a dog');
    expect(r.loras).toEqual([]);
    expect(r.ignored).toEqual(['<hypernet:anime:1>: hypernet networks are not supported', '<lora:x:lots>: not <lora:name:weight>']);
  });

  it('leaves a prompt without tags as it is', () => {
    expect(extractNetworks('a <cat-toy> on the beach, 4k')).toEqual({ prompt: 'a <cat-toy> on the beach, 4k', loras: [], ignored: [] });
  });
});

describe('resolveSampler', () => {
  it('maps every A1111 name, alias and Nuri name, in any case', () => {
    expect(resolveSampler('Euler a')).toEqual({ scheduler: 'euler-a', label: 'Euler a' });
    expect(resolveSampler('k_euler_a')?.scheduler).toBe('euler-a');
    expect(resolveSampler('dpm++ 2m karras')?.scheduler).toBe('dpmpp-2m-karras');
    expect(resolveSampler('PLMS')?.scheduler).toBe('pndm');
    expect(resolveSampler('lms')?.scheduler).toBe('lms');
    expect(resolveSampler('LCM')).toEqual({ scheduler: 'lcm', label: 'LCM' });
    expect(resolveSampler('k_lcm')?.scheduler).toBe('lcm');
    expect(resolveSampler('Heun')).toBeUndefined();
  });

  it("joins A1111 1.9's sampler + scheduler split, noting schedules it cannot honour", () => {
    expect(resolveSampler('DPM++ 2M', 'Karras')).toEqual({ scheduler: 'dpmpp-2m-karras', label: 'DPM++ 2M Karras' });
    expect(resolveSampler('DPM++ 2M', 'Automatic')).toEqual({ scheduler: 'dpmpp-2m', label: 'DPM++ 2M' });
    const euler = resolveSampler('Euler', 'Exponential');
    expect(euler?.scheduler).toBe('euler');
    expect(euler?.note).toMatch(/Exponential.*Euler/);
  });
});

describe('findModel', () => {
  const models = [
    { name: 'default', path: '/m/default' },
    { name: 'sd15/dreamshaper', path: '/models/sd15/dreamshaper.safetensors' },
  ];
  it('finds a checkpoint by title, A1111 "name [hash]", file name or stem', () => {
    expect(findModel(models, 'default')?.name).toBe('default');
    expect(findModel(models, 'sd15/dreamshaper [879db523c3]')?.name).toBe('sd15/dreamshaper');
    expect(findModel(models, 'dreamshaper.safetensors')?.name).toBe('sd15/dreamshaper');
    expect(findModel(models, 'dreamshaper')?.name).toBe('sd15/dreamshaper');
    expect(findModel(models, 'sdxl')).toBeUndefined();
  });
});

describe('vaeNearCheckpoint (A1111\'s "Automatic" VAE)', () => {
  const vaes = [
    { name: 'vae-ft-mse', path: '/m/vae/vae-ft-mse.safetensors' },
    { name: 'dreamy.vae', path: '/m/dreamy.vae.safetensors' },
    { name: 'anime-v3-kl', path: '/m/vae/anime-v3-kl.safetensors' },
  ];
  it('finds the VAE whose file name starts with the checkpoint file\'s, for single files only', () => {
    expect(vaeNearCheckpoint({ name: 'dreamy', path: '/m/dreamy.safetensors' }, vaes)?.name).toBe('dreamy.vae');
    expect(vaeNearCheckpoint({ name: 'anime-v3', path: '/m/sub/anime-v3.safetensors' }, vaes)?.name).toBe('anime-v3-kl');
    expect(vaeNearCheckpoint({ name: 'other', path: '/m/other.safetensors' }, vaes)).toBeUndefined();
    expect(vaeNearCheckpoint({ name: 'dreamy', path: '/m/dreamy' }, vaes)).toBeUndefined(); // a diffusers folder has its own
  });
});
