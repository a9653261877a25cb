// What Euler, Euler ancestral, LMS and DPM-Solver++ share: they visit a descending list of noise
// levels σ_0 > σ_1 > … (σ_t = √((1 − ᾱ_t)/ᾱ_t), see sigmas.ts), one per timestep, then a final one,
// and every timestep ↔ σ conversion goes through `sigmaAt` / `timestepAt` here.
//
// The sample they carry is one of two parameterisations of the same point:
//   variance-exploding (Euler, LMS, as in k-diffusion): x = x₀ + σ·ε. The UNet, trained on
//     x_t = √ᾱ·x₀ + √(1−ᾱ)·ε, is fed x / √(σ² + 1), which is exactly x_t.
//   variance-preserving (DPM-Solver, as diffusers implements it): x = x_t = α_t·x₀ + σ_t·ε with
//     α_t = 1/√(σ² + 1) and σ_t = σ·α_t, fed to the UNet as it is.

import { alphasCumprodFromBetas, makeBetas } from './betas.ts';
import { ConfigReader, rejectUnsupported, type CommonConfig, type DiffusersSchedulerConfig } from './config.ts';
import { indexForTimestep, interpolate, karrasSigmas, sigmasFromAlphasCumprod, sigmaToTimestep, vpNoiseLevel } from './sigmas.ts';
import { timestepPerItem, type Scheduler, type StepOptions, type StepResult } from './scheduler.ts';
import { spacedTimesteps } from './timesteps.ts';

const f32 = Math.fround;

export interface SigmaSchedulerConfig extends CommonConfig {
  /** Karras et al.'s ρ = 7 spacing of σ between the schedule's ends, instead of the timestep spacing. */
  useKarrasSigmas: boolean;
}

export type SampleSpace = 'variance-exploding' | 'variance-preserving';

/** The timesteps a schedule visits and σ at each (without the final σ). */
export interface SigmaSchedule {
  timesteps: number[];
  sigmas: number[];
}

export function readSigmaSchedulerConfig(json: DiffusersSchedulerConfig, className: string): SigmaSchedulerConfig {
  const reader = new ConfigReader(json, className);
  rejectUnsupported(reader);
  reader.unsupported('interpolation_type', (v) => v === 'linear');
  return { ...reader.common('linspace'), useKarrasSigmas: reader.boolean('use_karras_sigmas', false) };
}

export abstract class SigmaScheduler<Config extends SigmaSchedulerConfig = SigmaSchedulerConfig> implements Scheduler {
  readonly order = 1;
  readonly alphasCumprod: Float32Array;
  /** σ_t of every training timestep, ascending with t (float32). */
  readonly trainSigmas: Float32Array;
  /** log σ_t of every training timestep (float32), for σ → t. */
  private readonly logTrainSigmas: Float32Array;
  /** The noise levels to visit, one per timestep, then the final one (float32 values). */
  sigmas: Float32Array;
  timesteps: number[];
  numInferenceSteps: number | undefined;
  /** Position in `timesteps` of the next step; set by the first call after setTimesteps. */
  protected stepIndex: number | undefined;
  private beginIndex: number | undefined;

  constructor(
    readonly config: Config,
    readonly sampleSpace: SampleSpace = 'variance-exploding',
  ) {
    this.alphasCumprod = alphasCumprodFromBetas(makeBetas(this.config));
    this.trainSigmas = sigmasFromAlphasCumprod(this.alphasCumprod);
    this.logTrainSigmas = this.trainSigmas.map(Math.log);
    // Until setTimesteps: every training timestep, as the reference starts out.
    const n = this.config.numTrainTimesteps;
    this.timesteps = Array.from({ length: n }, (_, i) => n - 1 - i);
    this.sigmas = Float32Array.from([...this.trainSigmas].reverse().concat(0));
  }

  get initNoiseSigma(): number {
    if (this.sampleSpace === 'variance-preserving') return 1;
    const maxSigma = this.sigmas.reduce((a, b) => Math.max(a, b), 0);
    // leading never visits σ_max; its first σ is the largest one visited.
    if (this.config.timestepSpacing === 'leading') return f32(Math.sqrt(f32(f32(maxSigma * maxSigma) + 1)));
    return maxSigma;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { timesteps, sigmas } = this.schedule(numInferenceSteps);
    this.timesteps = timesteps;
    this.sigmas = Float32Array.from([...sigmas, this.finalSigma()]);
    this.numInferenceSteps = timesteps.length;
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
    if (this.sampleSpace === 'variance-preserving') return sample;
    const scale = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
    return sample.map((x) => x / scale);
  }

  abstract step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult;

  /** `original` noised to σ at each item's timestep (at the current step once the loop has started). */
  addNoise(original: Float32Array, noise: Float32Array, timesteps: number | readonly number[]): Float32Array {
    const batch = timestepPerItem(original, noise, timesteps);
    const out = new Float32Array(original.length);
    batch.timesteps.forEach((t, b) => {
      const index = this.beginIndex === undefined ? indexForTimestep(this.timesteps, t) : (this.stepIndex ?? this.beginIndex);
      // x₀ + σ·ε, or α_t·x₀ + σ_t·ε
      const { alpha, sigma } = this.sampleSpace === 'variance-preserving' ? vpNoiseLevel(this.sigmas[index]) : { alpha: 1, sigma: this.sigmas[index] };
      for (let i = b * batch.itemSize; i < (b + 1) * batch.itemSize; i++) out[i] = f32(alpha * original[i]) + f32(sigma * noise[i]);
    });
    return out;
  }

  /**
   * The timesteps to visit and their σ. Euler and LMS keep the spacing's own timesteps (fractional
   * with linspace); with Karras σ they space σ between that schedule's own ends.
   */
  protected schedule(numInferenceSteps: number): SigmaSchedule {
    const { timestepSpacing, numTrainTimesteps, stepsOffset, useKarrasSigmas } = this.config;
    const timesteps = spacedTimesteps(timestepSpacing, numTrainTimesteps, numInferenceSteps, { stepsOffset, round: false }).map(f32);
    const sigmas = timesteps.map((t) => this.sigmaAt(t));
    if (!useKarrasSigmas) return { timesteps, sigmas };
    const karras = karrasSigmas(sigmas[sigmas.length - 1], sigmas[0], numInferenceSteps);
    return { timesteps: karras.map((s) => f32(this.timestepAt(s))), sigmas: karras };
  }

  /** The σ after the last step: 0, fully denoised. */
  protected finalSigma(): number {
    return 0;
  }

  /** σ at a (possibly fractional) training timestep. */
  protected sigmaAt(timestep: number): number {
    return interpolate(this.trainSigmas, timestep);
  }

  /** The (fractional) training timestep whose σ is `sigma`. */
  protected timestepAt(sigma: number): number {
    return sigmaToTimestep(sigma, this.logTrainSigmas);
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

  /** x₀ estimated from the model output at σ, in the sample's parameterisation. */
  protected predictOriginal(modelOutput: Float32Array, sample: Float32Array, sigma: number): Float32Array {
    const out = new Float32Array(sample.length);
    if (this.config.predictionType === 'sample') {
      out.set(modelOutput);
    } else if (this.sampleSpace === 'variance-preserving') {
      const { alpha, sigma: sigmaT } = vpNoiseLevel(sigma);
      if (this.config.predictionType === 'epsilon') {
        // x₀ = (x_t − σ_t·ε) / α_t
        for (let i = 0; i < out.length; i++) out[i] = f32(sample[i] - f32(sigmaT * modelOutput[i])) / alpha;
      } else {
        // x₀ = α_t·x_t − σ_t·v
        for (let i = 0; i < out.length; i++) out[i] = f32(alpha * sample[i]) - f32(sigmaT * modelOutput[i]);
      }
    } else if (this.config.predictionType === 'epsilon') {
      for (let i = 0; i < out.length; i++) out[i] = sample[i] - f32(sigma * modelOutput[i]);
    } else {
      // x₀ = x/(σ² + 1) − σ/√(σ² + 1)·v
      const s2p1 = f32(f32(sigma * sigma) + 1);
      const vCoeff = f32(-sigma / f32(Math.sqrt(s2p1)));
      for (let i = 0; i < out.length; i++) out[i] = f32(modelOutput[i] * vCoeff) + f32(sample[i] / s2p1);
    }
    return out;
  }
}
