// With a model that knows the answer — it returns the true ε (or v) of a sample that lies exactly
// on x_t = √ᾱ·x₀ + √(1−ᾱ)·ε for one fixed x₀ and ε — every deterministic sampler here is exact:
// each step lands on the same trajectory at the next noise level, whatever its order, spacing or
// warm-up, so the loop must end at the trajectory's final point.
import { describe, expect, it } from 'vitest';
import { Generator } from '../../src/engine/random.ts';
import {
  createScheduler,
  DDIMScheduler,
  DDPMScheduler,
  DPMSolverMultistepScheduler,
  EulerAncestralDiscreteScheduler,
  PNDMScheduler,
  SigmaScheduler,
  type Scheduler,
  type SchedulerName,
} from '../../src/schedulers/index.ts';
import { maxAbsDiff } from './reference.ts';

const SD1 = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', steps_offset: 1, set_alpha_to_one: false, clip_sample: false, skip_prk_steps: true };

const gen = new Generator(11);
const x0 = gen.randn(32);
const eps = gen.randn(32);

/** √ᾱ·x₀ + √(1−ᾱ)·ε */
const vp = (a: number) => x0.map((x, i) => Math.sqrt(a) * x + Math.sqrt(1 - a) * eps[i]!);
/** v = √ᾱ·ε − √(1−ᾱ)·x₀ */
const vTarget = (a: number) => eps.map((e, i) => Math.sqrt(a) * e - Math.sqrt(1 - a) * x0[i]!);

/** ᾱ of the noise level the scheduler is at in step i, and the sample there. */
function level(scheduler: Scheduler, i: number, t: number): number {
  if (scheduler instanceof SigmaScheduler) {
    return 1 / (1 + scheduler.sigmas[i]! ** 2);
  }
  return scheduler.alphasCumprod[t]!;
}

function initialSample(scheduler: Scheduler): Float32Array {
  const a = level(scheduler, 0, scheduler.timesteps[0]!);
  // Variance-exploding samplers carry x / √ᾱ = x₀ + σ·ε.
  return scheduler instanceof SigmaScheduler && scheduler.sampleSpace === 'variance-exploding' ? vp(a).map((x) => x / Math.sqrt(a)) : vp(a);
}

function finalSample(scheduler: Scheduler): Float32Array {
  if (scheduler instanceof DDIMScheduler || scheduler instanceof PNDMScheduler) return vp(scheduler.finalAlphaCumprod);
  return x0; // the σ lists end at 0
}

const CASES: [string, SchedulerName, Record<string, unknown>][] = [
  ['DDIM', 'ddim', {}],
  ['DDIM trailing', 'ddim', { timestep_spacing: 'trailing', set_alpha_to_one: true }],
  ['PNDM (PLMS)', 'pndm', {}],
  ['PNDM with PRK warm-up', 'pndm', { skip_prk_steps: false }],
  ['PNDM trailing', 'pndm', { timestep_spacing: 'trailing' }],
  ['Euler', 'euler', {}],
  ['Euler linspace (fractional timesteps)', 'euler', { timestep_spacing: 'linspace' }],
  ['Euler Karras', 'euler', { use_karras_sigmas: true }],
  ['LMS', 'lms', {}],
  ['LMS Karras', 'lms', { use_karras_sigmas: true }],
  ['DPM-Solver++ 2M', 'dpmpp-2m', {}],
  ['DPM-Solver++ 2M Karras', 'dpmpp-2m-karras', {}],
  ['DPM-Solver++ 2M heun, σ_min final', 'dpmpp-2m', { solver_type: 'heun', final_sigmas_type: 'sigma_min' }],
  ['DPM-Solver++ 1S', 'dpmpp-2m', { solver_order: 1 }],
];

describe.each(['epsilon', 'v_prediction'] as const)('a model that knows the answer (%s)', (predictionType) => {
  const cases = CASES.filter(([label]) => predictionType === 'epsilon' || !label.startsWith('PNDM'));
  it.each(cases)('%s ends on the trajectory', (_, name, extra) => {
    const uniformGaps = name === 'ddim' || name === 'pndm';
    for (const steps of uniformGaps ? [10, 25] : [7, 25]) {
      const scheduler = createScheduler(name, { ...SD1, ...extra, prediction_type: predictionType });
      scheduler.setTimesteps(steps);
      let x = initialSample(scheduler);
      scheduler.timesteps.forEach((t, i) => {
        const a = level(scheduler, i, t);
        const output = predictionType === 'epsilon' ? eps : vTarget(a);
        scheduler.scaleModelInput(x, t);
        const { prevSample, predOriginalSample } = scheduler.step(output, t, x);
        expect(maxAbsDiff(predOriginalSample, x0), `x̂₀ at step ${i}`).toBeLessThan(2e-5);
        x = prevSample;
      });
      const expected = name === 'dpmpp-2m' && extra.final_sigmas_type === 'sigma_min'
        ? vp(1 / (1 + (scheduler as DPMSolverMultistepScheduler).sigmas[scheduler.timesteps.length]! ** 2))
        : finalSample(scheduler);
      expect(maxAbsDiff(x, expected), `${steps} steps`).toBeLessThan(5e-5);
    }
  });
});

describe('stochastic samplers with a model that knows the answer', () => {
  it('Euler ancestral: x₀ + σ_down·ε + σ_up·z, with σ_down² + σ_up² = σ′²', () => {
    const scheduler = new EulerAncestralDiscreteScheduler(SD1);
    scheduler.setTimesteps(10);
    const [sigma, next] = [scheduler.sigmas[0]!, scheduler.sigmas[1]!];
    const z = new Generator(5).randn(32);
    const x = x0.map((v, i) => v + sigma * eps[i]!);
    const { prevSample } = scheduler.step(eps, scheduler.timesteps[0]!, x, { noise: z });
    const sigmaUp = Math.sqrt((next ** 2 * (sigma ** 2 - next ** 2)) / sigma ** 2);
    const sigmaDown = Math.sqrt(next ** 2 - sigmaUp ** 2);
    const expected = x0.map((v, i) => v + sigmaDown * eps[i]! + sigmaUp * z[i]!);
    expect(maxAbsDiff(prevSample, expected)).toBeLessThan(1e-5);
    expect(() => scheduler.step(eps, scheduler.timesteps[1]!, prevSample)).toThrow(/generator/);
  });

  it('DDPM: posterior mean plus √var·z, and x̂₀ exact with v_prediction', () => {
    const scheduler = new DDPMScheduler({ ...SD1, prediction_type: 'v_prediction' });
    scheduler.setTimesteps(10);
    const [t, prev] = [501, 401];
    const a = scheduler.alphasCumprod[t]!;
    const aPrev = scheduler.alphasCumprod[prev]!;
    const z = new Generator(6).randn(32);
    const { prevSample, predOriginalSample } = scheduler.step(vTarget(a), t, vp(a), { noise: z });
    expect(maxAbsDiff(predOriginalSample, x0)).toBeLessThan(2e-6);
    const beta = 1 - a / aPrev;
    const mean = x0.map((v, i) => (Math.sqrt(aPrev) * beta * v + Math.sqrt(1 - beta) * (1 - aPrev) * vp(a)[i]!) / (1 - a));
    const std = Math.sqrt(((1 - aPrev) / (1 - a)) * beta);
    expect(maxAbsDiff(prevSample, mean.map((m, i) => m + std * z[i]!))).toBeLessThan(2e-6);
    // t = 0 adds no noise and needs no random source.
    expect(() => scheduler.step(vTarget(a), 0, vp(a))).not.toThrow();
  });
});
