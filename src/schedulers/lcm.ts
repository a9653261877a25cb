// Latent Consistency Models (Luo et al. 2023, Algorithm 3, multistep sampling). The distilled
// model maps x_t straight to the start of its trajectory through the consistency function
//   f(x, t) = c_skip(t)·x + c_out(t)·x̂₀(x, t),
//   c_skip = σ_d² / ((s·t)² + σ_d²),   c_out = s·t / √((s·t)² + σ_d²),   σ_d = 0.5, s = timestep_scaling,
// which is ≈ x̂₀ everywhere but t ≈ 0 (the boundary condition f(x, 0) = x). Between steps the
// estimate is noised again to the next timestep, √ᾱ'·f + √(1 − ᾱ')·z; the last step returns f
// and draws no noise. Timesteps come from the distillation grid of `original_inference_steps`
// (k = T / 50: 19, 39, …, 999), not from a spacing: `timestep_spacing` and `steps_offset` are ignored.

import { AlphaScheduler } from './alpha-scheduler.ts';
import { type Clipping, ConfigReader, rejectUnsupported, type CommonConfig, type DiffusersSchedulerConfig } from './config.ts';
import { clipInPlace, splitPrediction } from './prediction.ts';
import { checkSameSize, stepNoise, type StepOptions, type StepResult } from './scheduler.ts';
import { indexForTimestep } from './sigmas.ts';

const f32 = Math.fround;

/** σ_data of the consistency-model parameterisation (Song et al. 2023), fixed in LCM. */
const SIGMA_DATA = 0.5;

export interface LCMConfig extends CommonConfig, Clipping {
  setAlphaToOne: boolean;
  /** The step count the model was distilled with: its timesteps are the grid T/n·i − 1. */
  originalInferenceSteps: number;
  /** Multiplies t inside c_skip and c_out (sharpens the boundary condition near t = 0). */
  timestepScaling: number;
}

export function readLCMConfig(json: DiffusersSchedulerConfig): LCMConfig {
  const reader = new ConfigReader(json, 'LCMScheduler');
  rejectUnsupported(reader);
  const common = reader.common('leading', { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear' });
  return {
    ...common,
    ...reader.clipping(false),
    setAlphaToOne: reader.boolean('set_alpha_to_one', true),
    originalInferenceSteps: reader.integer('original_inference_steps', 50, 1, common.numTrainTimesteps),
    timestepScaling: reader.number('timestep_scaling', 10, (v) => v > 0, '> 0'),
  };
}

/** c_skip and c_out at integer timestep t, in float32 as the reference computes them. */
export function boundaryScalings(t: number, timestepScaling: number): { cSkip: number; cOut: number } {
  const scaled = f32(t * timestepScaling);
  const denominator = f32(f32(scaled * scaled) + SIGMA_DATA ** 2);
  return { cSkip: f32(SIGMA_DATA ** 2 / denominator), cOut: f32(scaled / f32(Math.sqrt(denominator))) };
}

export class LCMScheduler extends AlphaScheduler<LCMConfig> {
  /** Position in `timesteps` of the next step; fixed by the first step after setTimesteps. */
  private stepIndex: number | undefined;
  private beginIndex: number | undefined;

  constructor(json: DiffusersSchedulerConfig = {}) {
    super(readLCMConfig(json));
  }

  /** n timesteps picked evenly by index, from the top, out of the distillation grid. */
  override setTimesteps(numInferenceSteps: number): void {
    const { numTrainTimesteps, originalInferenceSteps } = this.config;
    if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > originalInferenceSteps) {
      throw new Error(`LCMScheduler: number of inference steps must be an integer in [1, ${originalInferenceSteps}] (original_inference_steps: the schedule is a subset of the distillation grid), got ${numInferenceSteps}`);
    }
    const k = Math.floor(numTrainTimesteps / originalInferenceSteps);
    const grid = Array.from({ length: originalInferenceSteps }, (_, i) => (originalInferenceSteps - i) * k - 1);
    // np.floor(np.linspace(0, len, n, endpoint=False)): i·(len/n) in double, then floor.
    const stride = grid.length / numInferenceSteps;
    this.timesteps = Array.from({ length: numInferenceSteps }, (_, i) => grid[Math.floor(i * stride)]);
    this.numInferenceSteps = numInferenceSteps;
    this.stepIndex = undefined;
    this.beginIndex = undefined;
  }

  override setBeginIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.timesteps.length) {
      throw new Error(`begin index must be an integer in [0, ${this.timesteps.length}), got ${index}`);
    }
    this.beginIndex = index;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult {
    checkSameSize(modelOutput, sample, 'LCMScheduler');
    if (this.numInferenceSteps === undefined) throw new Error('LCMScheduler: call setTimesteps before step');
    const index = (this.stepIndex ??= this.beginIndex ?? indexForTimestep(this.timesteps, timestep));
    if (index >= this.timesteps.length) throw new Error('LCMScheduler: stepped past the last timestep');
    const last = index === this.timesteps.length - 1;
    const alphaProd = this.alphaProdAt(timestep);

    const { predOriginal } = splitPrediction(this.config.predictionType, modelOutput, sample, alphaProd);
    if (this.config.clipSample) clipInPlace(predOriginal, this.config.clipSampleRange);
    const { cSkip, cOut } = boundaryScalings(timestep, this.config.timestepScaling);
    const denoised = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) denoised[i] = f32(cOut * predOriginal[i]) + f32(cSkip * sample[i]);

    this.stepIndex = index + 1;
    if (last) return { prevSample: denoised, predOriginalSample: denoised };
    const alphaProdNext = this.alphaProdAt(this.timesteps[index + 1]);
    const a = f32(Math.sqrt(alphaProdNext));
    const b = f32(Math.sqrt(f32(1 - alphaProdNext)));
    const noise = stepNoise(options, sample.length, 'LCMScheduler');
    const prevSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) prevSample[i] = f32(a * denoised[i]) + f32(b * noise[i]);
    return { prevSample, predOriginalSample: denoised };
  }
}
