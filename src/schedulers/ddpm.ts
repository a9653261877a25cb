// DDPM (Ho et al. 2020): ancestral sampling from the posterior q(x_{t'} | x_t, x̂₀), eqs. 6–7:
//   μ = √ᾱ_{t'}·β'_t / (1 − ᾱ_t) · x̂₀ + √α'_t·(1 − ᾱ_{t'}) / (1 − ᾱ_t) · x_t,
//   var = (1 − ᾱ_{t'}) / (1 − ᾱ_t) · β'_t,    α'_t = ᾱ_t / ᾱ_{t'}, β'_t = 1 − α'_t,
// where t' is the previous timestep of the (possibly shortened) schedule. Also the training-time
// scheduler: `addNoise` and `velocity` are the forward process and the v-target.

import { alphasCumprodFromBetas, makeBetas } from './betas.ts';
import { ConfigReader, rejectUnsupported, type CommonConfig, type DiffusersSchedulerConfig } from './config.ts';
import { clipInPlace, splitPrediction } from './prediction.ts';
import {
  addNoiseVp,
  alphaAt,
  checkSameSize,
  stepNoise,
  velocity,
  type Scheduler,
  type StepOptions,
  type StepResult,
} from './scheduler.ts';
import { spacedTimesteps } from './timesteps.ts';

const f32 = Math.fround;

/** fixed_small: the posterior variance above; fixed_large: β'_t (Ho et al.'s other choice). */
export type DDPMVarianceType = 'fixed_small' | 'fixed_small_log' | 'fixed_large';

export interface DDPMConfig extends CommonConfig {
  varianceType: DDPMVarianceType;
  clipSample: boolean;
  clipSampleRange: number;
}

export function readDDPMConfig(json: DiffusersSchedulerConfig): DDPMConfig {
  const reader = new ConfigReader(json, 'DDPMScheduler');
  rejectUnsupported(reader);
  return {
    ...reader.common('leading'),
    varianceType: reader.oneOf('variance_type', ['fixed_small', 'fixed_small_log', 'fixed_large'], 'fixed_small'),
    clipSample: reader.boolean('clip_sample', true),
    clipSampleRange: reader.number('clip_sample_range', 1, (v) => v > 0, '> 0'),
  };
}

export class DDPMScheduler implements Scheduler {
  readonly config: DDPMConfig;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** All training timesteps until `setTimesteps` shortens the schedule. */
  timesteps: number[];
  numInferenceSteps: number | undefined;

  constructor(json: DiffusersSchedulerConfig = {}) {
    this.config = readDDPMConfig(json);
    this.betas = makeBetas(this.config);
    this.alphasCumprod = alphasCumprodFromBetas(this.betas);
    this.timesteps = Array.from({ length: this.config.numTrainTimesteps }, (_, i) => this.config.numTrainTimesteps - 1 - i);
  }

  setTimesteps(numInferenceSteps: number): void {
    this.timesteps = spacedTimesteps(this.config.timestepSpacing, this.config.numTrainTimesteps, numInferenceSteps, {
      stepsOffset: this.config.stepsOffset,
      round: true,
    });
    this.numInferenceSteps = numInferenceSteps;
  }

  /** DDPM is stateless: any timestep may come first. */
  setBeginIndex(_index: number): void {}

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  /** t − T//n, as in the reference (see DDIMScheduler.previousTimestep). */
  previousTimestep(t: number): number {
    const n = this.numInferenceSteps ?? this.config.numTrainTimesteps;
    return t - Math.floor(this.config.numTrainTimesteps / n);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult {
    checkSameSize(modelOutput, sample, 'DDPMScheduler');
    const prevT = this.previousTimestep(timestep);
    const alphaProd = alphaAt(this.alphasCumprod, timestep);
    const alphaProdPrev = prevT >= 0 ? this.alphasCumprod[prevT] : 1;
    const betaProd = f32(1 - alphaProd);
    const betaProdPrev = f32(1 - alphaProdPrev);
    const currentAlpha = f32(alphaProd / alphaProdPrev);
    const currentBeta = f32(1 - currentAlpha);

    const { predOriginal } = splitPrediction(this.config.predictionType, modelOutput, sample, alphaProd);
    if (this.config.clipSample) clipInPlace(predOriginal, this.config.clipSampleRange);

    const originalCoeff = f32(f32(f32(Math.sqrt(alphaProdPrev)) * currentBeta) / betaProd);
    const sampleCoeff = f32(f32(f32(Math.sqrt(currentAlpha)) * betaProdPrev) / betaProd);
    const prevSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      prevSample[i] = f32(originalCoeff * predOriginal[i]) + f32(sampleCoeff * sample[i]);
    }
    if (timestep > 0) {
      const noise = stepNoise(options, sample.length, 'DDPMScheduler');
      const std = this.noiseStd(currentBeta, betaProd, betaProdPrev);
      for (let i = 0; i < prevSample.length; i++) prevSample[i] += f32(std * noise[i]);
    }
    return { prevSample, predOriginalSample: predOriginal };
  }

  addNoise(original: Float32Array, noise: Float32Array, timesteps: number | readonly number[]): Float32Array {
    return addNoiseVp(this.alphasCumprod, original, noise, timesteps);
  }

  /** The v-prediction training target at `timesteps` (one, or one per batch item). */
  velocity(sample: Float32Array, noise: Float32Array, timesteps: number | readonly number[]): Float32Array {
    return velocity(this.alphasCumprod, sample, noise, timesteps);
  }

  private noiseStd(currentBeta: number, betaProd: number, betaProdPrev: number): number {
    if (this.config.varianceType === 'fixed_large') return f32(Math.sqrt(currentBeta));
    // Clamped so that log(variance) stays finite at the last step (fixed_small_log).
    const variance = Math.max(f32(f32(betaProdPrev / betaProd) * currentBeta), 1e-20);
    return f32(Math.sqrt(variance));
  }
}
