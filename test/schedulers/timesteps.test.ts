import { describe, expect, it } from 'vitest';
import { createScheduler, EulerDiscreteScheduler, img2imgTimesteps, type SchedulerName } from '../../src/schedulers/index.ts';
import { img2imgStart, roundHalfEven, spacedTimesteps } from '../../src/schedulers/timesteps.ts';
import { loadCase, maxAbsDiff } from './reference.ts';

const ref = loadCase('scheduler_timesteps');
const initNoiseSigma = ref.meta.init_noise_sigma as Record<string, number>;

const PREFIXES: [string, SchedulerName][] = [
  ['ddpm', 'ddpm'],
  ['ddim', 'ddim'],
  ['pndm', 'pndm'],
  ['euler', 'euler'],
  ['euler_ancestral', 'euler-a'],
  ['dpmpp_2m', 'dpmpp-2m'],
  ['lms', 'lms'],
];
const GRID = PREFIXES.flatMap(([prefix, name]) =>
  (['leading', 'linspace', 'trailing'] as const).flatMap((spacing) => [10, 20, 50].map((n) => [prefix, name, spacing, n] as const)),
);

describe('timesteps, σ and init_noise_sigma against diffusers (scheduler_timesteps)', () => {
  it.each(GRID)('%s %s %i', (prefix, name, spacing, n) => {
    const key = `${prefix}_${spacing}_${n}`;
    const scheduler = createScheduler(name, { ...ref.meta.config, timestep_spacing: spacing });
    scheduler.setTimesteps(n);
    // Exact: integers for the ᾱ-indexed schedulers, the same float32 values for Euler and LMS.
    expect(scheduler.timesteps).toEqual(ref.numbers(`${key}_timesteps`));
    if (ref.has(`${key}_sigmas`)) {
      expect(maxAbsDiff((scheduler as EulerDiscreteScheduler).sigmas, ref.floats(`${key}_sigmas`))).toBe(0);
    }
    expect(scheduler.initNoiseSigma).toBe(initNoiseSigma[`${key}_init_noise_sigma`]);
  });
});

describe('spacedTimesteps', () => {
  const options = { stepsOffset: 1, round: true };
  it('leading with steps_offset 1 is the SD-1.x schedule', () => {
    expect(spacedTimesteps('leading', 1000, 10, options)).toEqual([901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  });
  it('trailing starts at T − 1 and ignores steps_offset', () => {
    expect(spacedTimesteps('trailing', 1000, 4, options)).toEqual([999, 749, 499, 249]);
  });
  it('linspace rounds half to even, as numpy does', () => {
    expect(spacedTimesteps('linspace', 1000, 3, options)).toEqual([999, 500, 0]); // 499.5 → 500
    expect(spacedTimesteps('linspace', 1000, 3, { stepsOffset: 0, round: false })).toEqual([999, 499.5, 0]);
  });
  it('rejects step counts outside [1, T]', () => {
    expect(() => spacedTimesteps('leading', 1000, 0, options)).toThrow(/inference steps/);
    expect(() => spacedTimesteps('leading', 1000, 1001, options)).toThrow(/inference steps/);
    expect(() => spacedTimesteps('leading', 1000, 2.5, options)).toThrow(/inference steps/);
  });
  it('refuses a leading schedule that steps_offset pushes past the last timestep, naming the most steps that fit', () => {
    expect(() => spacedTimesteps('leading', 1000, 1000, options)).toThrow(/reach timestep 1000, past the last training timestep 999: use at most 999 steps/);
    expect(spacedTimesteps('leading', 1000, 999, options)[0]).toBe(999);
    expect(spacedTimesteps('leading', 1000, 1000, { stepsOffset: 0, round: true })[0]).toBe(999);
  });
  it("counts DPM-Solver's limit in its steps, though it spaces one point more and drops it", () => {
    const dpm = (steps: number) => createScheduler('dpmpp-2m', { num_train_timesteps: 1000, steps_offset: 1, timestep_spacing: 'leading' }).setTimesteps(steps);
    // 999 steps space 1000 points: the first at 999·1 + 1 = 1000, one past the end; 998 steps fit.
    expect(() => dpm(999)).toThrow(/999 steps .* reach timestep 1000.*use at most 998 steps/);
    expect(() => dpm(998)).not.toThrow();
    expect(() => dpm(1000)).toThrow(/integer in \[1, 999\], got 1000/);
    expect(spacedTimesteps('linspace', 1000, 3, { ...options, dropLast: true })).toEqual([999, 666, 333]);
  });
  it('roundHalfEven', () => {
    expect([0.5, 1.5, 2.5, 2.4, 2.6, 3.5].map(roundHalfEven)).toEqual([0, 2, 2, 2, 3, 4]);
  });
});

describe('img2img start (diffusers get_timesteps)', () => {
  it('keeps the last ⌊n·strength⌋ steps', () => {
    expect(img2imgStart(50, 0.3)).toEqual({ beginIndex: 35, numInferenceSteps: 15 });
    expect(img2imgStart(10, 0.75)).toEqual({ beginIndex: 3, numInferenceSteps: 7 });
    expect(img2imgStart(10, 1)).toEqual({ beginIndex: 0, numInferenceSteps: 10 });
    expect(img2imgStart(10, 0)).toEqual({ beginIndex: 10, numInferenceSteps: 0 });
    // Python's int() truncates the float product: 100 · 0.29 = 28.999…
    expect(img2imgStart(100, 0.29)).toEqual({ beginIndex: 72, numInferenceSteps: 28 });
    expect(() => img2imgStart(10, 1.5)).toThrow(/strength/);
  });

  it('refuses a strength that leaves no step, saying so (not a bad begin index)', () => {
    const scheduler = new EulerDiscreteScheduler(ref.meta.config);
    scheduler.setTimesteps(1);
    expect(() => img2imgTimesteps(scheduler, 0.6)).toThrow(/strength 0.6 of 1 steps leaves no denoising step/);
  });

  it('slices the schedule and makes a σ-space scheduler begin there', () => {
    const scheduler = new EulerDiscreteScheduler(ref.meta.config);
    scheduler.setTimesteps(10);
    const { timesteps, numInferenceSteps } = img2imgTimesteps(scheduler, 0.6);
    expect(timesteps).toEqual([501, 401, 301, 201, 101, 1]);
    expect(numInferenceSteps).toBe(6);
    // addNoise before the first step uses σ at the begin index, whatever timestep is passed.
    const noisy = scheduler.addNoise(new Float32Array([0]), new Float32Array([1]), timesteps[0]!);
    expect(noisy[0]).toBe(scheduler.sigmas[4]);
  });
});
