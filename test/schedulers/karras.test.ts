import { describe, expect, it } from 'vitest';
import { createScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler } from '../../src/schedulers/index.ts';
import { karrasSigmas, sigmaToTimestep } from '../../src/schedulers/sigmas.ts';

const SD1 = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', steps_offset: 1, timestep_spacing: 'leading' };

/** Karras et al. (2022) eq. 5 written out: σ_i = (σ_max^(1/ρ) + i/(n−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, ρ = 7. */
function formula(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const rho = 7;
  return Array.from({ length: n }, (_, i) => {
    const a = Math.pow(sigmaMax, 1 / rho);
    const b = Math.pow(sigmaMin, 1 / rho);
    return Math.pow(a + (i / (n - 1)) * (b - a), rho);
  });
}

function expectRelativeClose(actual: ArrayLike<number>, expected: number[], tolerance: number) {
  expect(actual.length).toBe(expected.length);
  expected.forEach((e, i) => expect(Math.abs(actual[i]! - e) / e, `index ${i}`).toBeLessThan(tolerance));
}

describe('Karras sigmas', () => {
  it('karrasSigmas is the ρ = 7 interpolation between σ_max and σ_min', () => {
    const sigmas = karrasSigmas(0.0292, 14.6146, 10);
    expectRelativeClose(sigmas, formula(0.0292, 14.6146, 10), 1e-12);
    expect(sigmas[0]).toBeCloseTo(14.6146, 10);
    expect(sigmas[9]).toBeCloseTo(0.0292, 12);
    // Evenly spaced in σ^(1/7).
    const roots = sigmas.map((s) => s ** (1 / 7));
    const gaps = roots.slice(1).map((r, i) => r - roots[i]!);
    gaps.forEach((g) => expect(g).toBeCloseTo(gaps[0]!, 12));
  });

  it.each([10, 20, 50])('dpmpp-2m-karras with %i steps spans the training σ range and ends at 0', (n) => {
    const scheduler = createScheduler('dpmpp-2m-karras', SD1) as DPMSolverMultistepScheduler;
    scheduler.setTimesteps(n);
    const sigmaMin = scheduler.trainSigmas[0]!;
    const sigmaMax = scheduler.trainSigmas[999]!;
    expect(sigmaMax).toBeCloseTo(14.6146, 3);
    expect(sigmaMin).toBeCloseTo(0.0292, 4);
    expectRelativeClose(scheduler.sigmas.subarray(0, n), formula(sigmaMin, sigmaMax, n), 1e-6);
    expect(scheduler.sigmas[n]).toBe(0);
    // Each timestep is the training timestep nearest (in log σ) to its σ.
    expect(scheduler.timesteps[0]).toBe(999);
    expect(scheduler.timesteps[n - 1]).toBe(0);
    scheduler.timesteps.forEach((t, i) => {
      const exact = sigmaToTimestep(scheduler.sigmas[i]!, scheduler.trainSigmas.map(Math.log));
      expect(Math.abs(t - exact)).toBeLessThanOrEqual(0.5);
    });
  });

  it('sigmaToTimestep inverts σ(t) at training timesteps and clamps outside the range', () => {
    const scheduler = new EulerDiscreteScheduler(SD1);
    const logSigmas = scheduler.trainSigmas.map(Math.log);
    for (const t of [0, 1, 250, 998, 999]) expect(sigmaToTimestep(scheduler.trainSigmas[t]!, logSigmas)).toBeCloseTo(t, 4);
    expect(sigmaToTimestep(1e-5, logSigmas)).toBe(0);
    expect(sigmaToTimestep(100, logSigmas)).toBe(999);
  });

  it('Euler with use_karras_sigmas spaces σ between the spaced schedule’s own ends', () => {
    const plain = new EulerDiscreteScheduler(SD1);
    plain.setTimesteps(10);
    const karras = new EulerDiscreteScheduler({ ...SD1, use_karras_sigmas: true });
    karras.setTimesteps(10);
    expectRelativeClose(karras.sigmas.subarray(0, 10), formula(plain.sigmas[9]!, plain.sigmas[0]!, 10), 1e-6);
    expect(karras.sigmas[10]).toBe(0);
    expect(karras.timesteps[0]).toBeCloseTo(901, 3);
    expect(karras.timesteps[9]).toBeCloseTo(1, 3);
  });

  it('dpmpp-2m and dpmpp-2m-karras differ only in the σ schedule', () => {
    const plain = createScheduler('dpmpp-2m', { ...SD1, use_karras_sigmas: true }) as DPMSolverMultistepScheduler;
    expect(plain.config.useKarrasSigmas).toBe(false);
    expect((createScheduler('dpmpp-2m-karras', SD1) as DPMSolverMultistepScheduler).config.useKarrasSigmas).toBe(true);
  });
});
