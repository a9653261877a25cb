// What Euler, Euler ancestral and LMS share: they step x along a descending list of noise levels
// σ_0 > σ_1 > … > σ_{n−1} > 0 in the variance-exploding parameterisation x = x₀ + σ·ε, feeding the
// UNet (trained on x_t = √ᾱ·x₀ + √(1−ᾱ)·ε) with x / √(σ² + 1), which is exactly x_t.

import { alphasCumprodFromBetas, makeBetas } from './betas.ts';
import { ConfigReader, rejectUnsupported, type CommonConfig, type DiffusersSchedulerConfig } from './config.ts';
import { indexForTimestep, interpolate, karrasSigmas, sigmasFromAlphasCumprod, sigmaToTimestep } from './sigmas.ts';
import { timestepPerItem, type Scheduler, type StepOptions, type StepResult } from './scheduler.ts';
import { spacedTimesteps } from './timesteps.ts';

const f32 = Math.fround;

export interface SigmaSchedulerConfig extends CommonConfig {
  /** Karras et al.'s ρ = 7 spacing of σ between the schedule's ends, instead of the timestep spacing. */
  useKarrasSigmas: boolean;
}

export function readSigmaSchedulerConfig(json: DiffusersSchedulerConfig, className: string): SigmaSchedulerConfig {
  const reader = new ConfigReader(json, className);
  rejectUnsupported(reader);
  reader.unsupported('interpolation_type', (v) => v === 'linear');
  return { ...reader.common('linspace'), useKarrasSigmas: reader.boolean('use_karras_sigmas', false) };
}

export abstract class SigmaScheduler implements Scheduler {
  readonly config: SigmaSchedulerConfig;
  readonly order = 1;
  readonly alphasCumprod: Float32Array;
  /** σ_t of every training timestep, ascending with t (float32). */
  readonly trainSigmas: Float32Array;
  /** The noise levels to visit, one per timestep, then 0 (float32 values). */
  sigmas: Float32Array;
  timesteps: number[];
  numInferenceSteps: number | undefined;
  /** Position in `timesteps` of the next step; set by the first call after setTimesteps. */
  protected stepIndex: number | undefined;
  private beginIndex: number | undefined;

  constructor(json: DiffusersSchedulerConfig, className: string) {
    this.config = readSigmaSchedulerConfig(json, className);
    this.alphasCumprod = alphasCumprodFromBetas(makeBetas(this.config));
    this.trainSigmas = sigmasFromAlphasCumprod(this.alphasCumprod);
    // Until setTimesteps: every training timestep, as the reference starts out.
    const n = this.config.numTrainTimesteps;
    this.timesteps = Array.from({ length: n }, (_, i) => n - 1 - i);
    this.sigmas = Float32Array.from([...this.trainSigmas].reverse().concat(0));
  }

  get initNoiseSigma(): number {
    const maxSigma = this.sigmas.reduce((a, b) => Math.max(a, b), 0);
    // leading never visits σ_max; its first σ is the largest one visited.
    if (this.config.timestepSpacing === 'leading') return f32(Math.sqrt(f32(f32(maxSigma * maxSigma) + 1)));
    return maxSigma;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { timestepSpacing, numTrainTimesteps, stepsOffset, useKarrasSigmas } = this.config;
    let timesteps = spacedTimesteps(timestepSpacing, numTrainTimesteps, numInferenceSteps, { stepsOffset, round: false }).map(f32);
    let sigmas = timesteps.map((t) => interpolate(this.trainSigmas, t));
    if (useKarrasSigmas) {
      sigmas = karrasSigmas(sigmas[sigmas.length - 1], sigmas[0], numInferenceSteps);
      const logSigmas = this.trainSigmas.map(Math.log);
      timesteps = sigmas.map((s) => f32(sigmaToTimestep(s, logSigmas)));
    }
    this.timesteps = timesteps;
    this.sigmas = Float32Array.from([...sigmas, 0]);
    this.numInferenceSteps = numInferenceSteps;
    this.stepIndex = undefined;
    this.beginIndex = undefined;
    this.resetHistory();
  }

  setBeginIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.timesteps.length) {
      throw new Error(`begin index must be an integer in [0, ${this.timesteps.length}), got ${index}`);
    }
    this.beginIndex = index;
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const sigma = this.sigmas[this.currentIndex(timestep)];
    const scale = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
    return sample.map((x) => x / scale);
  }

  abstract step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult;

  /** x₀ + σ·ε with σ at each item's timestep (at the current step once the loop has started). */
  addNoise(original: Float32Array, noise: Float32Array, timesteps: number | readonly number[]): Float32Array {
    const batch = timestepPerItem(original, noise, timesteps);
    const out = new Float32Array(original.length);
    batch.timesteps.forEach((t, b) => {
      const index = this.beginIndex === undefined ? indexForTimestep(this.timesteps, t) : (this.stepIndex ?? this.beginIndex);
      const sigma = this.sigmas[index];
      for (let i = b * batch.itemSize; i < (b + 1) * batch.itemSize; i++) out[i] = original[i] + f32(noise[i] * sigma);
    });
    return out;
  }

  /** Subclasses with multistep state clear it here. */
  protected resetHistory(): void {}

  /** The step index for `timestep`, fixing it on the first call after setTimesteps. */
  protected currentIndex(timestep: number): number {
    if (this.numInferenceSteps === undefined) throw new Error(`${this.constructor.name}: call setTimesteps first`);
    this.stepIndex ??= this.beginIndex ?? indexForTimestep(this.timesteps, timestep);
    if (this.stepIndex >= this.timesteps.length) throw new Error(`${this.constructor.name}: stepped past the last timestep`);
    return this.stepIndex;
  }

  /** x₀ estimated from the model output at σ (the model saw x / √(σ² + 1)). */
  protected predictOriginal(modelOutput: Float32Array, sample: Float32Array, sigma: number): Float32Array {
    const out = new Float32Array(sample.length);
    switch (this.config.predictionType) {
      case 'epsilon':
        for (let i = 0; i < out.length; i++) out[i] = sample[i] - f32(sigma * modelOutput[i]);
        break;
      case 'v_prediction': {
        // x₀ = x/(σ² + 1) − σ/√(σ² + 1)·v
        const s2p1 = f32(f32(sigma * sigma) + 1);
        const vCoeff = f32(-sigma / f32(Math.sqrt(s2p1)));
        for (let i = 0; i < out.length; i++) out[i] = f32(modelOutput[i] * vCoeff) + f32(sample[i] / s2p1);
        break;
      }
      case 'sample':
        out.set(modelOutput);
        break;
    }
    return out;
  }
}
