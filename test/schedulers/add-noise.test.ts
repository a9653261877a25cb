import { describe, expect, it } from 'vitest';
import { DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, LMSDiscreteScheduler, PNDMScheduler } from '../../src/schedulers/index.ts';
import { loadCase, maxAbsDiff } from './reference.ts';

const ref = loadCase('scheduler_add_noise');
const original = ref.floats('original');
const noise = ref.floats('noise');

describe('addNoise against diffusers (scheduler_add_noise)', () => {
  it.each([
    ['DDPM', DDPMScheduler],
    ['DDIM', DDIMScheduler],
    ['PNDM', PNDMScheduler],
  ] as const)('%s: √ᾱ·x₀ + √(1−ᾱ)·ε with one timestep per batch item', (_, Scheduler) => {
    const noisy = new Scheduler(ref.meta.config).addNoise(original, noise, ref.numbers('timesteps'));
    expect(maxAbsDiff(noisy, ref.floats('ddpm_noisy'))).toBe(0);
  });

  it.each([
    ['Euler', EulerDiscreteScheduler],
    ['LMS', LMSDiscreteScheduler],
  ] as const)('%s: x₀ + σ·ε at σ of each item’s timestep (20-step schedule)', (_, Scheduler) => {
    const scheduler = new Scheduler(ref.meta.config);
    scheduler.setTimesteps(20);
    const noisy = scheduler.addNoise(original, noise, ref.numbers('euler_timesteps'));
    expect(maxAbsDiff(noisy, ref.floats('euler_noisy'))).toBe(0);
  });

  it('DPM-Solver noises in VP form, α_t·x₀ + σ_t·ε, which agrees with DDPM at integer timesteps', () => {
    const scheduler = new DPMSolverMultistepScheduler(ref.meta.config);
    scheduler.setTimesteps(20);
    const t = scheduler.timesteps[3]!;
    const ddpm = new DDPMScheduler(ref.meta.config).addNoise(original, noise, t);
    expect(maxAbsDiff(scheduler.addNoise(original, noise, t), ddpm)).toBeLessThan(1e-5);
  });

  it('one timestep applies to every batch item; sizes are checked', () => {
    const scheduler = new DDPMScheduler(ref.meta.config);
    const all = scheduler.addNoise(original, noise, 500);
    expect(maxAbsDiff(all, scheduler.addNoise(original, noise, [500, 500, 500, 500]))).toBe(0);
    expect(() => scheduler.addNoise(original, noise, [1, 2, 3])).toThrow(/divide/);
    expect(() => scheduler.addNoise(original, noise.subarray(1), 5)).toThrow(/noise/);
    expect(() => scheduler.addNoise(original, noise, 1000)).toThrow(/timestep/);
    expect(() => scheduler.addNoise(original, noise, 2.5)).toThrow(/timestep/);
  });

  it('velocity is the v-target, from which the v-parameterisation recovers x₀ and ε', () => {
    const scheduler = new DDPMScheduler(ref.meta.config);
    const t = 700;
    const a = scheduler.alphasCumprod[t]!;
    const noisy = scheduler.addNoise(original, noise, t);
    const v = scheduler.velocity(original, noise, t);
    const x0 = v.map((vi, i) => Math.sqrt(a) * noisy[i]! - Math.sqrt(1 - a) * vi);
    const eps = v.map((vi, i) => Math.sqrt(a) * vi + Math.sqrt(1 - a) * noisy[i]!);
    expect(maxAbsDiff(x0, original)).toBeLessThan(1e-5);
    expect(maxAbsDiff(eps, noise)).toBeLessThan(1e-5);
  });
});
