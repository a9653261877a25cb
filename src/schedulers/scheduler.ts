// What every sampler offers the loop that drives it (the caller owns the loop):
//
//   scheduler.setTimesteps(n);
//   let x = initialNoise × scheduler.initNoiseSigma;
//   for (const t of scheduler.timesteps) {
//     const eps = unet(scheduler.scaleModelInput(x, t), t);
//     x = scheduler.step(eps, t, x, { generator }).prevSample;
//   }
//
// Samples are flat float32 arrays of any shape; a batch is B equal-sized items back to back.

import type { RandomSource } from '../engine/random.ts';
import type { CommonConfig } from './config.ts';
import { img2imgStart } from './timesteps.ts';

export interface StepOptions {
  /** Draws the noise of a stochastic step (DDPM, DDIM with η > 0, Euler ancestral). */
  generator?: RandomSource;
  /** The noise to use as-is instead of drawing it: N(0, 1), the sample's size. */
  noise?: Float32Array;
}

export interface StepResult {
  /** x at the next (lower-noise) timestep. */
  prevSample: Float32Array;
  /** The current estimate of the clean sample x₀ (for previews). */
  predOriginalSample: Float32Array;
}

export interface Scheduler {
  readonly config: Readonly<CommonConfig>;
  /** Model evaluations per step (1 for every scheduler here). */
  readonly order: number;
  /** ᾱ_t for every training timestep (float32), what training noises latents with. */
  readonly alphasCumprod: Float32Array;
  /** The timesteps to visit, in order (integers, except Euler/LMS with linspace spacing). */
  readonly timesteps: number[];
  readonly numInferenceSteps: number | undefined;
  /** The standard deviation of the initial noise: latents from N(0, 1) are multiplied by it. */
  readonly initNoiseSigma: number;
  setTimesteps(numInferenceSteps: number): void;
  /** Start the denoising loop at `timesteps[index]` (img2img). */
  setBeginIndex(index: number): void;
  /** The UNet's input at timestep t (σ-space samplers divide by √(σ² + 1)). */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult;
  /** The forward process: `original` noised to `timesteps` (one for all items, or one per batch item). */
  addNoise(original: Float32Array, noise: Float32Array, timesteps: number | readonly number[]): Float32Array;
}

/**
 * The img2img schedule for `strength` ∈ [0, 1] (diffusers' `get_timesteps`): the scheduler's
 * timesteps from where the last ⌊n·strength⌋ steps begin. Tells the scheduler to begin there, so
 * call it after `setTimesteps(n)` and before `addNoise` with the first returned timestep.
 */
export function img2imgTimesteps(scheduler: Scheduler, strength: number): { timesteps: number[]; numInferenceSteps: number } {
  if (scheduler.numInferenceSteps === undefined) throw new Error('call setTimesteps before img2imgTimesteps');
  const start = img2imgStart(scheduler.numInferenceSteps, strength, scheduler.order);
  if (start.numInferenceSteps === 0) {
    throw new Error(`strength ${strength} of ${scheduler.numInferenceSteps} steps leaves no denoising step (⌊steps · strength⌋ = 0): raise the strength or the steps`);
  }
  scheduler.setBeginIndex(start.beginIndex);
  return { timesteps: scheduler.timesteps.slice(start.beginIndex), numInferenceSteps: start.numInferenceSteps };
}

/** The noise for a stochastic step: given, or drawn from the generator. */
export function stepNoise(options: StepOptions | undefined, size: number, who: string): Float32Array {
  if (options?.noise) {
    if (options.noise.length !== size) throw new Error(`${who}: noise has ${options.noise.length} values, the sample ${size}`);
    return options.noise;
  }
  if (options?.generator) return options.generator.randn(size);
  throw new Error(`${who}: this step is stochastic; pass options.generator or options.noise`);
}

export function checkSameSize(modelOutput: Float32Array, sample: Float32Array, who: string): void {
  if (modelOutput.length !== sample.length) {
    throw new Error(`${who}: model output has ${modelOutput.length} values, the sample ${sample.length}`);
  }
}

/** One timestep per batch item: a single timestep applies to every item. */
export function timestepPerItem(
  original: Float32Array,
  noise: Float32Array,
  timesteps: number | readonly number[],
): { timesteps: readonly number[]; itemSize: number } {
  if (noise.length !== original.length) throw new Error(`noise has ${noise.length} values, the sample ${original.length}`);
  const list = typeof timesteps === 'number' ? [timesteps] : timesteps;
  if (list.length === 0 || original.length % list.length !== 0) {
    throw new Error(`${list.length} timesteps do not divide a batch of ${original.length} values`);
  }
  return { timesteps: list, itemSize: original.length / list.length };
}

/** ᾱ_t, checking that t is a training timestep. */
export function alphaAt(alphasCumprod: Float32Array, t: number): number {
  if (!Number.isInteger(t) || t < 0 || t >= alphasCumprod.length) {
    throw new Error(`timestep must be an integer in [0, ${alphasCumprod.length}), got ${t}`);
  }
  return alphasCumprod[t];
}

/**
 * q(x_t | x₀) for the ᾱ-indexed schedulers: √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, per batch item, with the
 * coefficients in float32 as the reference computes them.
 */
export function addNoiseVp(
  alphasCumprod: Float32Array,
  original: Float32Array,
  noise: Float32Array,
  timesteps: number | readonly number[],
): Float32Array {
  const batch = timestepPerItem(original, noise, timesteps);
  const out = new Float32Array(original.length);
  batch.timesteps.forEach((t, b) => {
    const a = alphaAt(alphasCumprod, t);
    const sqrtAlpha = Math.fround(Math.sqrt(a));
    const sqrtOneMinusAlpha = Math.fround(Math.sqrt(Math.fround(1 - a)));
    for (let i = b * batch.itemSize; i < (b + 1) * batch.itemSize; i++) {
      out[i] = Math.fround(sqrtAlpha * original[i]) + Math.fround(sqrtOneMinusAlpha * noise[i]);
    }
  });
  return out;
}

/** The v-prediction target v = √ᾱ_t·ε − √(1 − ᾱ_t)·x₀ (Salimans & Ho 2022), per batch item. */
export function velocity(
  alphasCumprod: Float32Array,
  sample: Float32Array,
  noise: Float32Array,
  timesteps: number | readonly number[],
): Float32Array {
  const batch = timestepPerItem(sample, noise, timesteps);
  const out = new Float32Array(sample.length);
  batch.timesteps.forEach((t, b) => {
    const a = alphaAt(alphasCumprod, t);
    const sqrtAlpha = Math.sqrt(a);
    const sqrtOneMinusAlpha = Math.sqrt(1 - a);
    for (let i = b * batch.itemSize; i < (b + 1) * batch.itemSize; i++) {
      out[i] = sqrtAlpha * noise[i] - sqrtOneMinusAlpha * sample[i];
    }
  });
  return out;
}
