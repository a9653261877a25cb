// Whole sampling loops against diffusers, driven by the recorded synthetic model
// ε = 0.1·(scaled input) + E, with the noise each stochastic step drew injected. Closed loop: every
// step's input is our own previous output, so errors compound as they would in a real pipeline.
import { describe, expect, it } from 'vitest';
import { createScheduler, type SchedulerName } from '../../src/schedulers/index.ts';
import { loadCase, maxAbs, maxAbsDiff } from './reference.ts';

const f32 = Math.fround;
/** torch multiplies a float32 tensor by a Python scalar in float32. */
const TENTH = f32(0.1);

const CASES: [string, SchedulerName, { eta?: number }][] = [
  ['ddpm', 'ddpm', {}],
  ['ddim_eta0', 'ddim', { eta: 0 }],
  ['ddim_eta1', 'ddim', { eta: 1 }],
  ['pndm', 'pndm', {}],
  ['euler', 'euler', {}],
  ['euler_ancestral', 'euler-a', {}],
  ['dpmpp_2m', 'dpmpp-2m', {}],
  ['lms', 'lms', {}],
];

/**
 * The cases' stated tolerance: "fp32; ~1e-6 relative per step, error compounds over steps (use
 * ~1e-4 abs on late steps)". Applied as 1e-6 relative per step so far, capped at 1e-4 absolute
 * for the values' own scale (σ-space samples reach |x| ≈ 50).
 */
function tolerance(step: number, scale: number): number {
  return Math.min(1e-6 * (step + 1), 1e-4) * Math.max(1, scale);
}

describe.each(CASES)('trajectory %s', (label, name, stepOptions) => {
  it.each([20, 50])('%i steps matches diffusers step by step', (steps) => {
    const ref = loadCase(`scheduler_traj_${label}_${steps}`);
    const scheduler = createScheduler(name, ref.meta.config);
    scheduler.setTimesteps(steps);
    expect(scheduler.timesteps).toEqual(ref.numbers('timesteps'));
    if (ref.has('sigmas') && 'sigmas' in scheduler) {
      expect(maxAbsDiff(scheduler.sigmas as Float32Array, ref.floats('sigmas'))).toBeLessThanOrEqual(1e-6 * 15);
    }

    const E = ref.floats('E');
    const xT = ref.floats('x_T_unscaled').map((v) => v * scheduler.initNoiseSigma);
    const errors = { x_T: maxAbsDiff(xT, ref.floats('x_T')), input: 0, output: 0, prev: 0, original: 0 };
    let x: Float32Array = xT;
    scheduler.timesteps.forEach((t, i) => {
      const input = scheduler.scaleModelInput(x, t);
      const eps = input.map((v, j) => f32(TENTH * v) + E[j]!);
      const noise = ref.row('step_noise', i);
      const result = scheduler.step(eps, t, x, { ...stepOptions, noise });
      const check = (key: keyof typeof errors, ours: Float32Array, tensor: string) => {
        const expected = ref.row(tensor, i);
        const err = maxAbsDiff(ours, expected);
        errors[key] = Math.max(errors[key], err);
        expect(err, `${tensor} at step ${i} (t=${t})`).toBeLessThanOrEqual(tolerance(i, maxAbs(expected)));
      };
      check('input', input, 'scaled_model_input');
      check('output', eps, 'model_output');
      check('prev', result.prevSample, 'prev_sample');
      if (ref.has('pred_original_sample')) check('original', result.predOriginalSample, 'pred_original_sample');
      x = result.prevSample;
    });
    console.log(`scheduler_traj_${label}_${steps}: max abs error ${JSON.stringify(errors, (_, v) => (typeof v === 'number' ? Number(v.toExponential(2)) : v))}`);
  });
});
