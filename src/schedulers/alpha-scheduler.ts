// What DDPM, DDIM, PNDM and LCM share: they index the training schedule's ᾱ_t directly (no σ),
// start from N(0, 1) noise as it is, feed the UNet the sample unscaled, and noise a clean sample
// with q(x_t | x₀). Each adds its own step (and PNDM and LCM their own timestep lists).

import { alphasCumprodFromBetas, makeBetas } from './betas.ts';
import type { CommonConfig } from './config.ts';
import { addNoiseVp, alphaAt, type Scheduler, type StepOptions, type StepResult } from './scheduler.ts';
import { spacedTimesteps } from './timesteps.ts';

export interface AlphaSchedulerConfig extends CommonConfig {
  /** ᾱ "before" t = 0: 1 (a fully clean final step; DDPM always) or ᾱ_0 (what SD-1.x uses). */
  setAlphaToOne?: boolean;
}

export abstract class AlphaScheduler<Config extends AlphaSchedulerConfig = AlphaSchedulerConfig> implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** ᾱ used past the last step (t' < 0). */
  readonly finalAlphaCumprod: number;
  /** All training timesteps, descending, until `setTimesteps` picks the ones to visit. */
  timesteps: number[];
  numInferenceSteps: number | undefined;

  constructor(readonly config: Config) {
    this.betas = makeBetas(config);
    this.alphasCumprod = alphasCumprodFromBetas(this.betas);
    this.finalAlphaCumprod = (config.setAlphaToOne ?? true) ? 1 : this.alphasCumprod[0];
    const n = config.numTrainTimesteps;
    this.timesteps = Array.from({ length: n }, (_, i) => n - 1 - i);
  }

  /** The config's spacing (leading / linspace / trailing), rounded to training timesteps. */
  setTimesteps(numInferenceSteps: number): void {
    const { timestepSpacing, numTrainTimesteps, stepsOffset } = this.config;
    this.timesteps = spacedTimesteps(timestepSpacing, numTrainTimesteps, numInferenceSteps, { stepsOffset, round: true });
    this.numInferenceSteps = numInferenceSteps;
  }

  /** ᾱ at timestep t, or the final ᾱ for t < 0. */
  alphaProdAt(t: number): number {
    return t < 0 ? this.finalAlphaCumprod : alphaAt(this.alphasCumprod, t);
  }

  /** Stateless steps may start anywhere (img2img); LCM, which counts steps, overrides this. */
  setBeginIndex(_index: number): void {}

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  abstract step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult;

  addNoise(original: Float32Array, noise: Float32Array, timesteps: number | readonly number[]): Float32Array {
    return addNoiseVp(this.alphasCumprod, original, noise, timesteps);
  }
}
