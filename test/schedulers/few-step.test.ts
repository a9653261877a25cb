// Few-step sampling against diffusers (second set, case k): LCM's timesteps from its distillation
// grid, "trailing" spacing (SD-Turbo) for Euler, Euler ancestral and DDIM, and whole sampling loops
// driven by the synthetic model ε = 0.1·(scaled input) + E with each step's recorded noise injected.
import { describe, expect, it } from 'vitest';
import { createScheduler, defaultSchedulerFor, LCMScheduler, type SchedulerName } from '../../src/schedulers/index.ts';
import { boundaryScalings } from '../../src/schedulers/lcm.ts';
import { loadCase, maxAbs, maxAbsDiff } from './reference.ts';

const f32 = Math.fround;
const TENTH = f32(0.1);

const timestepsCase = loadCase('scheduler_timesteps_2');
const initNoiseSigma = timestepsCase.meta.init_noise_sigma as Record<string, number>;

describe('few-step timesteps against diffusers (scheduler_timesteps_2)', () => {
  it.each([1, 2, 3, 4, 6, 8])('LCM %i steps: the distillation grid, spacing and steps_offset ignored', (n) => {
    const scheduler = createScheduler('lcm', timestepsCase.meta.config);
    scheduler.setTimesteps(n);
    expect(scheduler.timesteps).toEqual(timestepsCase.numbers(`lcm_${n}_timesteps`));
    expect(scheduler.initNoiseSigma).toBe(1);
  });

  const trailing: [string, SchedulerName, number][] = [1, 2, 4].flatMap((n) => [
    ['euler', 'euler', n] as [string, SchedulerName, number],
    ['euler_ancestral', 'euler-a', n] as [string, SchedulerName, number],
  ]);
  it.each(trailing)('%s trailing %i: timesteps, σ and init_noise_sigma = σ_max', (prefix, name, n) => {
    const key = `${prefix}_trailing_${n}`;
    const scheduler = createScheduler(name, { ...timestepsCase.meta.config, timestep_spacing: 'trailing' }) as ReturnType<typeof createScheduler> & { sigmas: Float32Array };
    scheduler.setTimesteps(n);
    expect(scheduler.timesteps).toEqual(timestepsCase.numbers(`${key}_timesteps`));
    expect(maxAbsDiff(scheduler.sigmas, timestepsCase.floats(`${key}_sigmas`))).toBe(0);
    expect(scheduler.initNoiseSigma).toBe(initNoiseSigma[`${key}_init_noise_sigma`]);
  });

  it('DDIM trailing 4', () => {
    const scheduler = createScheduler('ddim', { ...timestepsCase.meta.config, timestep_spacing: 'trailing' });
    scheduler.setTimesteps(4);
    expect(scheduler.timesteps).toEqual(timestepsCase.numbers('ddim_trailing_4_timesteps'));
  });
});

/** The cases' stated tolerance: "fp32; ~1e-6 relative per step (values reach ~85: use ~1e-4 abs)". */
function tolerance(scale: number): number {
  return Math.min(1e-6 * Math.max(1, scale), 1e-4);
}

const TRAJECTORIES: [string, SchedulerName][] = [
  ...[1, 2, 4, 8].map((n): [string, SchedulerName] => [`lcm_${n}`, 'lcm']),
  ...[1, 2, 4].map((n): [string, SchedulerName] => [`euler_trailing_${n}`, 'euler']),
  ...[1, 2, 4].map((n): [string, SchedulerName] => [`euler_ancestral_trailing_${n}`, 'euler-a']),
  ['ddim_trailing_4', 'ddim'],
];

describe.each(TRAJECTORIES)('trajectory %s', (label, name) => {
  it('matches diffusers step by step with the recorded noise injected', () => {
    const ref = loadCase(`scheduler_traj_${label}`);
    const scheduler = createScheduler(name, ref.meta.config);
    scheduler.setTimesteps(ref.meta.num_inference_steps!);
    expect(scheduler.timesteps).toEqual(ref.numbers('timesteps'));

    const E = ref.floats('E');
    const xT = ref.floats('x_T_unscaled').map((v) => v * scheduler.initNoiseSigma);
    expect(maxAbsDiff(xT, ref.floats('x_T'))).toBe(0);
    let x: Float32Array = xT;
    const errors: number[] = [];
    scheduler.timesteps.forEach((t, i) => {
      const input = scheduler.scaleModelInput(x, t);
      const eps = input.map((v, j) => f32(TENTH * v) + E[j]!);
      const result = scheduler.step(eps, t, x, { noise: ref.row('step_noise', i) });
      const check = (ours: Float32Array, tensor: string) => {
        const expected = ref.row(tensor, i);
        const err = maxAbsDiff(ours, expected);
        errors.push(err);
        expect(err, `${tensor} at step ${i} (t=${t})`).toBeLessThanOrEqual(tolerance(maxAbs(expected)));
      };
      check(input, 'scaled_model_input');
      check(eps, 'model_output');
      check(result.prevSample, 'prev_sample');
      check(result.predOriginalSample, ref.has('denoised') ? 'denoised' : 'pred_original_sample');
      x = result.prevSample;
    });
    console.log(`scheduler_traj_${label}: max abs error ${Math.max(...errors).toExponential(2)}`);
  });
});

describe('LCM', () => {
  it('absent config fields take LCMScheduler’s own defaults (SD’s β schedule, not DDPM’s)', () => {
    expect(new LCMScheduler().config).toMatchObject({
      betaStart: 0.00085,
      betaEnd: 0.012,
      betaSchedule: 'scaled_linear',
      clipSample: false,
      setAlphaToOne: true,
      originalInferenceSteps: 50,
      timestepScaling: 10,
    });
    expect(() => new LCMScheduler({ thresholding: true })).toThrow(/LCMScheduler: "thresholding" true is not supported/);
  });

  it('the last step returns the denoised sample and draws nothing (1 step: no noise at all)', () => {
    const scheduler = new LCMScheduler();
    scheduler.setTimesteps(1);
    const sample = Float32Array.from({ length: 8 }, (_, i) => i - 4);
    const eps = sample.map((v) => v / 2);
    const draws = { randn: () => expect.unreachable('drew noise'), rand: () => expect.unreachable('drew noise'), randint: () => 0 };
    const { prevSample, predOriginalSample } = scheduler.step(eps, 999, sample, { generator: draws });
    expect(prevSample).toBe(predOriginalSample);
  });

  it('c_skip → 1 and c_out → 0 at t = 0 (the boundary condition), c_out ≈ 1 far from it', () => {
    expect(boundaryScalings(0, 10)).toEqual({ cSkip: 1, cOut: 0 });
    const far = boundaryScalings(999, 10);
    expect(far.cSkip).toBeLessThan(1e-7);
    expect(far.cOut).toBeCloseTo(1, 6);
  });

  it('refuses more steps than the distillation grid has', () => {
    const scheduler = new LCMScheduler({ original_inference_steps: 50 });
    expect(() => scheduler.setTimesteps(51)).toThrow(/LCMScheduler: number of inference steps must be an integer in \[1, 50\]/);
    expect(() => new LCMScheduler({ original_inference_steps: 0 })).toThrow(/"original_inference_steps" must be an integer from 1 to 1000/);
  });

  it('img2img: begins at the begin index and still draws no noise on the schedule’s last step', () => {
    const scheduler = new LCMScheduler();
    scheduler.setTimesteps(4);
    scheduler.setBeginIndex(2);
    const sample = new Float32Array(4).fill(1);
    const first = scheduler.step(sample, scheduler.timesteps[2]!, sample, { noise: new Float32Array(4).fill(1) });
    expect(first.prevSample).not.toBe(first.predOriginalSample);
    const last = scheduler.step(sample, scheduler.timesteps[3]!, first.prevSample);
    expect(last.prevSample).toBe(last.predOriginalSample);
  });
});

describe("a model's own sampler (defaultSchedulerFor)", () => {
  it('follows _class_name: LCM, SD-Turbo’s and SDXL’s Euler, DPM-Solver++ with or without Karras σ', () => {
    expect(defaultSchedulerFor({ _class_name: 'LCMScheduler' })).toBe('lcm');
    expect(defaultSchedulerFor({ _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'trailing' })).toBe('euler');
    expect(defaultSchedulerFor({ _class_name: 'EulerAncestralDiscreteScheduler' })).toBe('euler-a');
    expect(defaultSchedulerFor({ _class_name: 'DPMSolverMultistepScheduler', use_karras_sigmas: true })).toBe('dpmpp-2m-karras');
    expect(defaultSchedulerFor({ _class_name: 'DPMSolverMultistepScheduler' })).toBe('dpmpp-2m');
  });

  it('keeps DDIM for SD 1.x’s PNDM, a class Nuri lacks, and a config without a class', () => {
    for (const config of [{ _class_name: 'PNDMScheduler' }, { _class_name: 'UniPCMultistepScheduler' }, {}]) expect(defaultSchedulerFor(config)).toBe('ddim');
  });
});
