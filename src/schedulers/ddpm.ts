// DDPM (Ho et al. 2020): ancestral sampling from the posterior q(x_{t'} | x_t, x̂₀), eqs. 6–7:
//   μ = √ᾱ_{t'}·β'_t / (1 − ᾱ_t) · x̂₀ + √α'_t·(1 − ᾱ_{t'}) / (1 − ᾱ_t) · x_t,
//   var = (1 − ᾱ_{t'}) / (1 − ᾱ_t) · β'_t,    α'_t = ᾱ_t / ᾱ_{t'}, β'_t = 1 − α'_t,
// where t' is the previous timestep of the (possibly shortened) schedule. Also the training-time
// scheduler: `addNoise` and `velocity` are the forward process and the v-target.

import { AlphaScheduler } from './alpha-scheduler.ts';
import { type Clipping, ConfigReader, rejectUnsupported, type CommonConfig, type DiffusersSchedulerConfig } from './config.ts';
import { clipInPlace, splitPrediction } from './prediction.ts';
import { alphaAt, checkSameSize, stepNoise, velocity, type StepOptions, type StepResult } from './scheduler.ts';

const f32 = Math.fround;

/** fixed_small: the posterior variance above; fixed_large: β'_t (Ho et al.'s other choice). */
export type DDPMVarianceType = 'fixed_small' | 'fixed_small_log' | 'fixed_large';

export interface DDPMConfig extends CommonConfig, Clipping {
  varianceType: DDPMVarianceType;
}

export function readDDPMConfig(json: DiffusersSchedulerConfig): DDPMConfig {
  const reader = new ConfigReader(json, 'DDPMScheduler');
  rejectUnsupported(reader);
  return {
    ...reader.common('leading'),
    varianceType: reader.oneOf('variance_type', ['fixed_small', 'fixed_small_log', 'fixed_large'], 'fixed_small'),
    ...reader.clipping(true),
  };
}

export class DDPMScheduler extends AlphaScheduler<DDPMConfig> {
  constructor(json: DiffusersSchedulerConfig = {}) {
    super(readDDPMConfig(json));
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
    const alphaProdPrev = this.alphaProdAt(prevT);
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
