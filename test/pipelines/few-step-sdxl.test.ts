// Few steps on SDXL (tiny-sdxl): SDXL-Turbo's scheduler config (Euler, trailing) picked up by the
// pipeline at 1 step from σ_max, and the LCM-LoRA recipe — a LoRA on a resnet's 3×3 conv merged,
// the LCM sampler, guidance 1 — running through the added conditions.

import { beforeAll, describe, expect, it } from 'vitest';
import { Generator } from '../../src/engine/random.ts';
import { mergeLora } from '../../src/models/lora.ts';
import { generate } from '../../src/pipelines/generate.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { TINY_SDXL } from '../fixtures.ts';
import { maxAbsDiff } from '../schedulers/reference.ts';

const SIZE = { width: 64, height: 64 };
const latents = new Generator(5).randn(4 * 8 * 8);

describe('few steps on tiny-sdxl', () => {
  let sd: StableDiffusion;
  beforeAll(() => {
    sd = StableDiffusion.load(TINY_SDXL);
  });

  it('SDXL-Turbo’s config (EulerDiscreteScheduler, trailing): 1 step from t = 999, as if named', async () => {
    const turbo = new StableDiffusion({ ...sd.components, schedulerConfig: { ...sd.components.schedulerConfig, timestep_spacing: 'trailing' } });
    const timesteps: number[] = [];
    const base = { prompts: ['a cat'], guidance: 0, steps: 1, latents, ...SIZE };
    const own = await generate(turbo, { ...base, onStep: (p) => timesteps.push(p.timestep) });
    expect(own.scheduler).toBe('euler');
    expect(timesteps).toEqual([999]);
    const named = await generate(sd, { ...base, scheduler: 'euler', timestepSpacing: 'trailing' });
    expect(maxAbsDiff(own.latents, named.latents)).toBe(0);
  });

  it('LCM-LoRA: a conv LoRA merged into the SDXL UNet, LCM at 2 steps, guidance 1', async () => {
    const options = { prompts: ['a cat'], scheduler: 'lcm' as const, guidance: 1, steps: 2, latents, seed: 1, ...SIZE };
    const plain = await generate(sd, options);
    const withLora = StableDiffusion.load(TINY_SDXL);
    const conv = withLora.components.unet.parameters().find((p) => p.name === 'down_blocks.0.resnets.0.conv1.weight')!;
    const [out, inner] = [conv.shape[0]!, conv.size / conv.shape[0]!];
    const g = new Generator(9);
    await mergeLora({ unet: withLora.components.unet }, [
      { component: 'unet', module: 'down_blocks.0.resnets.0.conv1', rank: 2, inFeatures: inner, outFeatures: out, alpha: 2, down: g.randn(2 * inner), up: g.randn(out * 2) },
    ]);
    const lcm = await generate(withLora, options);
    expect(lcm.scheduler).toBe('lcm');
    expect(lcm.latents.every(Number.isFinite)).toBe(true);
    expect(maxAbsDiff(lcm.latents, plain.latents)).toBeGreaterThan(1e-3);
  });
});
