import { describe, expect, it } from 'vitest';
import { Generator } from '../../src/engine/random.ts';
import { DDIMScheduler, ddimTransfer } from '../../src/schedulers/index.ts';
import { maxAbsDiff } from './reference.ts';

const SD1 = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', steps_offset: 1, set_alpha_to_one: false, clip_sample: false };

/** A known x₀ and ε, and x_t = √ᾱ·x₀ + √(1−ᾱ)·ε. */
function constructed(alphaProd: number) {
  const gen = new Generator(7);
  const x0 = gen.randn(64);
  const eps = gen.randn(64);
  const xt = x0.map((x, i) => Math.sqrt(alphaProd) * x + Math.sqrt(1 - alphaProd) * eps[i]!);
  return { x0, eps, xt };
}

describe('DDIM', () => {
  it('v_prediction: from v = √ᾱ·ε − √(1−ᾱ)·x₀ the step recovers x₀ and lands on √ᾱ′·x₀ + √(1−ᾱ′)·ε', () => {
    const scheduler = new DDIMScheduler({ ...SD1, prediction_type: 'v_prediction' });
    scheduler.setTimesteps(20);
    for (const t of [951, 501, 51, 1]) {
      const a = scheduler.alphasCumprod[t]!;
      const { x0, eps, xt } = constructed(a);
      const v = x0.map((x, i) => Math.sqrt(a) * eps[i]! - Math.sqrt(1 - a) * x);
      const aPrev = scheduler.alphaProdAt(scheduler.previousTimestep(t));
      const expected = x0.map((x, i) => Math.sqrt(aPrev) * x + Math.sqrt(1 - aPrev) * eps[i]!);
      const { prevSample, predOriginalSample } = scheduler.step(v, t, xt);
      expect(maxAbsDiff(predOriginalSample, x0)).toBeLessThan(2e-6);
      expect(maxAbsDiff(prevSample, expected)).toBeLessThan(2e-6);
    }
  });

  it('sample prediction: x₀ given, ε recovered', () => {
    const scheduler = new DDIMScheduler({ ...SD1, prediction_type: 'sample' });
    scheduler.setTimesteps(10);
    const t = 501;
    const a = scheduler.alphasCumprod[t]!;
    const { x0, eps, xt } = constructed(a);
    const aPrev = scheduler.alphasCumprod[401]!;
    const expected = x0.map((x, i) => Math.sqrt(aPrev) * x + Math.sqrt(1 - aPrev) * eps[i]!);
    expect(maxAbsDiff(scheduler.step(x0, t, xt).prevSample, expected)).toBeLessThan(2e-6);
  });

  it('ddimTransfer inverts: up to a higher noise level and back again returns the start', () => {
    const scheduler = new DDIMScheduler(SD1);
    const aLow = scheduler.alphasCumprod[201]!;
    const aHigh = scheduler.alphasCumprod[301]!;
    const { x0, eps, xt } = constructed(aLow);
    const up = ddimTransfer(xt, eps, aLow, aHigh);
    const expectedUp = x0.map((x, i) => Math.sqrt(aHigh) * x + Math.sqrt(1 - aHigh) * eps[i]!);
    expect(maxAbsDiff(up, expectedUp)).toBeLessThan(2e-6);
    expect(maxAbsDiff(ddimTransfer(up, eps, aHigh, aLow), xt)).toBeLessThan(2e-6);
  });

  it('the deterministic step equals ddimTransfer between the two ᾱ', () => {
    const scheduler = new DDIMScheduler(SD1);
    scheduler.setTimesteps(10);
    const { eps, xt } = constructed(scheduler.alphasCumprod[601]!);
    const model = eps.map((e) => e * 0.9 + 0.05);
    const viaStep = scheduler.step(model, 601, xt).prevSample;
    const viaTransfer = ddimTransfer(xt, model, scheduler.alphasCumprod[601]!, scheduler.alphasCumprod[501]!);
    expect(maxAbsDiff(viaStep, viaTransfer)).toBe(0);
  });

  it('set_alpha_to_one: the last step returns x̂₀; otherwise it stops at ᾱ_0', () => {
    for (const setAlphaToOne of [true, false]) {
      const scheduler = new DDIMScheduler({ ...SD1, set_alpha_to_one: setAlphaToOne });
      scheduler.setTimesteps(10);
      const { x0, eps, xt } = constructed(scheduler.alphasCumprod[1]!);
      const { prevSample, predOriginalSample } = scheduler.step(eps, 1, xt);
      expect(maxAbsDiff(predOriginalSample, x0)).toBeLessThan(1e-6);
      const aFinal = setAlphaToOne ? 1 : scheduler.alphasCumprod[0]!;
      expect(scheduler.finalAlphaCumprod).toBe(aFinal);
      const expected = x0.map((x, i) => Math.sqrt(aFinal) * x + Math.sqrt(1 - aFinal) * eps[i]!);
      expect(maxAbsDiff(prevSample, expected)).toBeLessThan(1e-6);
    }
  });

  it('steps from t to t − T//n as diffusers does, even where the schedule’s next entry differs (linspace)', () => {
    const scheduler = new DDIMScheduler({ ...SD1, timestep_spacing: 'linspace' });
    scheduler.setTimesteps(10);
    expect(scheduler.timesteps.slice(0, 2)).toEqual([999, 888]);
    expect(scheduler.previousTimestep(999)).toBe(899);
    const { eps, xt } = constructed(scheduler.alphasCumprod[999]!);
    const viaTransfer = ddimTransfer(xt, eps, scheduler.alphasCumprod[999]!, scheduler.alphasCumprod[899]!);
    expect(maxAbsDiff(scheduler.step(eps, 999, xt).prevSample, viaTransfer)).toBe(0);
  });

  it('clip_sample (on by default) clamps x̂₀ to ±clip_sample_range', () => {
    const scheduler = new DDIMScheduler({ clip_sample_range: 0.5 });
    scheduler.setTimesteps(10);
    const { predOriginalSample } = scheduler.step(new Float32Array([-3, 0, 3]), 900, new Float32Array([0, 0.01, 0]));
    expect(Math.max(...predOriginalSample.map(Math.abs))).toBe(0.5);
  });

  it('η > 0 needs a random source, and a seeded one reproduces', () => {
    const scheduler = new DDIMScheduler(SD1);
    scheduler.setTimesteps(10);
    const { eps, xt } = constructed(scheduler.alphasCumprod[501]!);
    expect(() => scheduler.step(eps, 501, xt, { eta: 1 })).toThrow(/generator/);
    const a = scheduler.step(eps, 501, xt, { eta: 1, generator: new Generator(3) }).prevSample;
    const b = scheduler.step(eps, 501, xt, { eta: 1, generator: new Generator(3) }).prevSample;
    const c = scheduler.step(eps, 501, xt, { eta: 1, generator: new Generator(4) }).prevSample;
    expect(maxAbsDiff(a, b)).toBe(0);
    expect(maxAbsDiff(a, c)).toBeGreaterThan(0);
    expect(() => scheduler.step(eps, 501, xt, { eta: 1, noise: new Float32Array(3) })).toThrow(/noise/);
  });
});
