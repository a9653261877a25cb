import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Generator } from '../../src/engine/random.ts';
import {
  createScheduler,
  DDIMScheduler,
  DDPMScheduler,
  DPMSolverMultistepScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  LMSDiscreteScheduler,
  PNDMScheduler,
  SCHEDULER_NAMES,
  type SchedulerName,
} from '../../src/schedulers/index.ts';
import { TINY_SD } from '../fixtures.ts';

const sdConfig = JSON.parse(readFileSync(join(TINY_SD, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;

describe('scheduler_config.json', () => {
  it('reads the SD-1.x config (a PNDM one) into any scheduler, ignoring other classes’ fields', () => {
    const ddim = new DDIMScheduler(sdConfig);
    expect(ddim.config).toMatchObject({
      numTrainTimesteps: 1000,
      betaStart: 0.00085,
      betaEnd: 0.012,
      betaSchedule: 'scaled_linear',
      stepsOffset: 1,
      predictionType: 'epsilon',
      timestepSpacing: 'leading',
      clipSample: false,
      setAlphaToOne: false,
    });
    expect(new PNDMScheduler(sdConfig).config.skipPrkSteps).toBe(true);
    expect(new EulerDiscreteScheduler(sdConfig).config.timestepSpacing).toBe('leading');
  });

  it('absent fields take each class’s diffusers default', () => {
    expect(new DDIMScheduler().config).toMatchObject({
      betaStart: 0.0001,
      betaEnd: 0.02,
      betaSchedule: 'linear',
      clipSample: true,
      clipSampleRange: 1,
      setAlphaToOne: true,
      stepsOffset: 0,
      timestepSpacing: 'leading',
      eta: 0,
    });
    expect(new DDPMScheduler().config).toMatchObject({ clipSample: true, varianceType: 'fixed_small', timestepSpacing: 'leading' });
    expect(new PNDMScheduler().config).toMatchObject({ skipPrkSteps: false, setAlphaToOne: false, timestepSpacing: 'leading' });
    for (const Scheduler of [EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, LMSDiscreteScheduler]) {
      expect(new Scheduler().config).toMatchObject({ timestepSpacing: 'linspace', useKarrasSigmas: false });
    }
    expect(new DPMSolverMultistepScheduler().config).toMatchObject({
      timestepSpacing: 'linspace',
      solverOrder: 2,
      solverType: 'midpoint',
      lowerOrderFinal: true,
      finalSigmasType: 'zero',
      useKarrasSigmas: false,
    });
  });

  it('null means absent, as diffusers writes it', () => {
    expect(new DDIMScheduler({ trained_betas: null, clip_sample: null }).config.clipSample).toBe(true);
  });

  it.each([
    [{ beta_schedule: 'cosine' }, /DDIMScheduler: "beta_schedule" must be one of "linear", "scaled_linear", "squaredcos_cap_v2", got "cosine"/],
    [{ num_train_timesteps: 0 }, /"num_train_timesteps" must be an integer from 2 to 100000, got 0/],
    [{ num_train_timesteps: 10.5 }, /num_train_timesteps/],
    [{ beta_start: -1 }, /"beta_start" must be a number in \(0, 1\)/],
    [{ beta_end: '0.02' }, /beta_end/],
    [{ prediction_type: 'x0' }, /prediction_type/],
    [{ timestep_spacing: 'uniform' }, /timestep_spacing/],
    [{ steps_offset: -1 }, /steps_offset/],
    [{ clip_sample: 'yes' }, /"clip_sample" must be a boolean, got "yes"/],
    [{ clip_sample_range: 0 }, /clip_sample_range/],
    [{ eta: -0.5 }, /eta/],
    [{ trained_betas: [0.1, 0.2] }, /"trained_betas" must be num_train_timesteps \(1000\) values, got \[2 values\]/],
    [{ thresholding: true }, /DDIMScheduler: "thresholding" true is not supported/],
    [{ rescale_betas_zero_snr: true }, /"rescale_betas_zero_snr" true is not supported/],
  ])('rejects %j with a clear error', (config, message) => {
    expect(() => new DDIMScheduler(config)).toThrow(message);
  });

  it('rejects features of other samplers that are not implemented', () => {
    expect(() => new DPMSolverMultistepScheduler({ algorithm_type: 'sde-dpmsolver++' })).toThrow(/algorithm_type/);
    expect(() => new DPMSolverMultistepScheduler({ solver_order: 3 })).toThrow(/solver_order=3/);
    expect(() => new DDPMScheduler({ variance_type: 'learned_range' })).toThrow(/variance_type/);
    expect(() => new EulerDiscreteScheduler({ interpolation_type: 'log_linear' })).toThrow(/interpolation_type/);
    expect(() => new PNDMScheduler({ prediction_type: 'sample' })).toThrow(/sample/);
    expect(() => new DDIMScheduler([] as unknown as Record<string, unknown>)).toThrow(/JSON object/);
  });
});

describe('createScheduler', () => {
  it.each(SCHEDULER_NAMES.map((n) => [n]))('%s runs a seeded loop reproducibly', (name) => {
    const run = () => {
      const scheduler = createScheduler(name, sdConfig);
      scheduler.setTimesteps(8);
      const gen = new Generator(42);
      let x: Float32Array = gen.randn(16).map((v) => v * scheduler.initNoiseSigma);
      for (const t of scheduler.timesteps) {
        const input = scheduler.scaleModelInput(x, t);
        x = scheduler.step(input.map((v) => 0.1 * v), t, x, { generator: gen }).prevSample;
      }
      return x;
    };
    const a = run();
    expect(a.every(Number.isFinite)).toBe(true);
    expect([...run()]).toEqual([...a]);
  });

  it('rejects unknown names', () => {
    expect(() => createScheduler('heun' as SchedulerName)).toThrow(/unknown scheduler "heun"/);
  });

  it('step before setTimesteps, and a step past the end, are errors', () => {
    expect(() => new DDIMScheduler().step(new Float32Array(1), 10, new Float32Array(1))).toThrow(/setTimesteps/);
    const euler = new EulerDiscreteScheduler();
    expect(() => euler.scaleModelInput(new Float32Array(1), 999)).toThrow(/setTimesteps/);
    euler.setTimesteps(2);
    const x = new Float32Array(1);
    for (const t of euler.timesteps) euler.step(x, t, x);
    expect(() => euler.step(x, euler.timesteps[1]!, x)).toThrow(/past the last/);
    expect(() => new DDIMScheduler().step(new Float32Array(2), 10, new Float32Array(1))).toThrow(/model output has 2 values/);
  });

  it.each(['euler', 'dpmpp-2m', 'dpmpp-2m-karras'] as const)('%s names a first timestep that is not in its schedule', (name) => {
    const scheduler = createScheduler(name, sdConfig);
    scheduler.setTimesteps(4);
    const x = new Float32Array(2);
    expect(() => scheduler.step(x, 500, x)).toThrow(/timestep 500 is not in the schedule/);
    expect(() => scheduler.addNoise(x, x, 500)).toThrow(/timestep 500 is not in the schedule/);
  });

  it('PNDM without skip_prk_steps warms up with Runge–Kutta half steps', () => {
    const scheduler = new PNDMScheduler({ ...sdConfig, skip_prk_steps: false });
    scheduler.setTimesteps(10);
    expect(scheduler.timesteps).toEqual([
      901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, // PRK: 3 intervals × 4 evaluations
      601, 501, 401, 301, 201, 101, 1, // PLMS
    ]);
  });

  it('PNDM with skip_prk_steps repeats the second timestep', () => {
    const scheduler = new PNDMScheduler(sdConfig);
    scheduler.setTimesteps(10);
    expect(scheduler.timesteps).toEqual([901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    scheduler.setTimesteps(1);
    expect(scheduler.timesteps).toEqual([1]);
  });
});
