// Few-step sampling through the txt2img pipeline on tiny-sd: a model's own scheduler config picks
// the sampler (SD-Turbo's trailing Euler, an LCM model's LCMScheduler), guidance ≤ 1 runs no
// unconditional pass, and given step noise replaces what a stochastic sampler would draw.

import { beforeAll, describe, expect, it, vi } from 'vitest';
import { Generator } from '../../src/engine/random.ts';
import { edit } from '../../src/pipelines/edit.ts';
import { BatchGenerator, generate } from '../../src/pipelines/generate.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { TINY_SD } from '../fixtures.ts';
import { copyTinySd, editJson } from '../model-copy.ts';

const SIZE = { width: 64, height: 64 };
const SHAPE = [1, 4, 8, 8];
const LENGTH = 4 * 8 * 8;

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
}

/** tiny-sd with its scheduler config rewritten as a few-step model ships it. */
function modelWithScheduler(config: Record<string, unknown>): StableDiffusion {
  const dir = copyTinySd();
  editJson(dir, 'scheduler/scheduler_config.json', (json) => Object.assign(json, config));
  return StableDiffusion.load(dir);
}

describe('few-step models on tiny-sd', () => {
  let sd: StableDiffusion;
  const latents = new Generator(11).randn(LENGTH);
  beforeAll(() => {
    sd = StableDiffusion.load(TINY_SD);
  });

  it('SD-Turbo’s config (EulerDiscreteScheduler, trailing) samples with trailing Euler at 1, 2 and 4 steps, σ_max first', async () => {
    const turbo = modelWithScheduler({ _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'trailing' });
    const base = { prompts: ['a cat'], guidance: 0, latents, ...SIZE };
    for (const steps of [1, 2, 4]) {
      const timesteps: number[] = [];
      const own = await generate(turbo, { ...base, steps, onStep: (p) => timesteps.push(p.timestep) });
      expect(own.scheduler).toBe('euler');
      expect(timesteps[0]).toBe(999);
      expect(timesteps).toHaveLength(steps);
      const named = await generate(sd, { ...base, steps, scheduler: 'euler', timestepSpacing: 'trailing' });
      expect(maxAbsDiff(own.latents, named.latents)).toBe(0);
    }
    // SD-1.x's own leading spacing starts lower (σ ≈ 8.45 at t = 501 for 2 steps): another picture.
    const leading = await generate(sd, { ...base, steps: 2, scheduler: 'euler' });
    const trailing = await generate(turbo, { ...base, steps: 2 });
    expect(maxAbsDiff(leading.latents, trailing.latents)).toBeGreaterThan(1e-2);
  });

  it('an LCM model’s config (LCMScheduler) samples with LCM on the distillation grid', async () => {
    // tiny-sd's own weights and sessions' graphs, its scheduler config as LCM-Dreamshaper ships it.
    const lcm = new StableDiffusion({ ...sd.components, schedulerConfig: { ...sd.components.schedulerConfig, _class_name: 'LCMScheduler' } });
    const timesteps: number[] = [];
    const result = await generate(lcm, { prompts: ['a cat'], guidance: 1, steps: 4, latents, seed: 3, ...SIZE, onStep: (p) => timesteps.push(p.timestep) });
    expect(result.scheduler).toBe('lcm');
    expect(timesteps).toEqual([999, 759, 499, 259]);
  });

  it('guidance ≤ 1 runs the UNet on the prompt alone (no unconditional pass); above 1 on [uncond, cond]', async () => {
    const batches: number[] = [];
    const predictNoise = sd.predictNoise.bind(sd);
    const spy = vi.spyOn(sd, 'predictNoise').mockImplementation((...args) => {
      batches.push(args[2][0]);
      return predictNoise(...args);
    });
    try {
      await generate(sd, { prompts: ['a cat'], scheduler: 'lcm', steps: 2, guidance: 1, latents, seed: 1, ...SIZE });
      expect(batches).toEqual([1, 1]);
      batches.length = 0;
      await generate(sd, { prompts: ['a cat'], scheduler: 'lcm', steps: 2, guidance: 7.5, latents, seed: 1, ...SIZE });
      expect(batches).toEqual([2, 2]);
    } finally {
      spy.mockRestore();
    }
  });

  it('given step noise replaces the draws: the seed no longer matters, and the result is the seeded run’s when it is that run’s noise', async () => {
    const options = { prompts: ['a cat'], scheduler: 'euler-a' as const, steps: 3, guidance: 1, ...SIZE };
    // What a seeded run draws: the initial latents, then one tensor per step.
    const draws = new BatchGenerator([5]);
    const initial = draws.randn(LENGTH);
    const stepNoise = [0, 1, 2].map(() => draws.randn(LENGTH));
    const seeded = await generate(sd, { ...options, seed: 5 });
    const replayed = await generate(sd, { ...options, seed: 99, latents: initial, stepNoise });
    expect(maxAbsDiff(replayed.latents, seeded.latents)).toBe(0);
    const drawn = await generate(sd, { ...options, seed: 99, latents: initial });
    expect(maxAbsDiff(drawn.latents, seeded.latents)).toBeGreaterThan(1e-2);

    await expect(generate(sd, { ...options, latents: initial, stepNoise: stepNoise.slice(0, 2) })).rejects.toThrow('step noise holds 2 steps; this run takes 3');
    await expect(generate(sd, { ...options, latents: initial, stepNoise: [...stepNoise.slice(0, 2), new Float32Array(3)] })).rejects.toThrow(`step noise of step 2 has 3 values; [${SHAPE.join(', ')}] needs ${LENGTH}`);
  });

  it('edit: one row of step noise is shared by both prompts, like one row of latents', async () => {
    const options = { source: 'a cat riding a bike', target: 'a dog riding a bike', scheduler: 'euler-a' as const, steps: 2, guidance: 1, latents, ...SIZE };
    const rows = [new Generator(21).randn(LENGTH), new Generator(22).randn(LENGTH)];
    const twice = (row: Float32Array) => Float32Array.from([...row, ...row]);
    const one = await edit(sd, { ...options, seed: 1, stepNoise: rows });
    const both = await edit(sd, { ...options, seed: 2, stepNoise: rows.map(twice) });
    expect(maxAbsDiff(one.latents, both.latents)).toBe(0);
    const drawn = await edit(sd, { ...options, seed: 1 });
    expect(maxAbsDiff(drawn.latents, one.latents)).toBeGreaterThan(1e-2);
  });
});
