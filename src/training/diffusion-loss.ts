// The latent diffusion training objective (DDPM, Ho et al. 2020): noise clean latents x₀ to a
// uniformly drawn timestep t, x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε, and regress the UNet's output on ε
// (or on v = √ᾱ_t·ε − √(1−ᾱ_t)·x₀ for v-prediction models) with a mean squared error.
//
// With min-SNR-γ weighting (Hang et al. 2023) each item's squared error is scaled by
// min(SNR_t, γ)/SNR_t for ε (min(SNR_t, γ)/(SNR_t + 1) for v), SNR_t = ᾱ_t/(1−ᾱ_t): the nearly
// clean timesteps, whose easy ε-targets otherwise dominate the gradient, count less.
//
// The draws (t, ε) and ᾱ_t lookups happen in TS from the training Generator; the noising, the
// UNet and the loss are one graph, so the gradient reaches whatever produced x₀ or the context.

import { type Dim, type Feeds, type RandomSource, Tensor, add, mean, mul, reshape, sub } from '../engine/index.ts';
import type { UNet2DConditionModel, UNetForwardOptions } from '../models/unet.ts';
import type { PredictionType } from '../schedulers/index.ts';

/** The loss graph's per-batch inputs; see `diffusionInputs` for their names. */
export interface DiffusionInputs {
  /** x₀ [B, C, h, w] (scaled latents, as the UNet sees them). */
  latents: Tensor;
  /** ε [B, C, h, w] ~ N(0, 1). */
  noise: Tensor;
  /** t [B] as float32 (the UNet's timestep input). */
  timestep: Tensor;
  /** √ᾱ_t and √(1−ᾱ_t), [B]. */
  sqrtAlphaCumprod: Tensor;
  sqrtOneMinusAlphaCumprod: Tensor;
}

export interface DiffusionLoss {
  /** Mean squared error over every element. */
  loss: Tensor;
  /** The UNet output [B, C, h, w]. */
  prediction: Tensor;
  /** ε or v [B, C, h, w], what the prediction is regressed on. */
  target: Tensor;
  noisyLatents: Tensor;
}

/** Graph inputs named latents, noise, timestep, sqrt_alpha_cumprod, sqrt_one_minus_alpha_cumprod. */
export function diffusionInputs(batch: Dim, latentShape: readonly [number, number, number]): DiffusionInputs {
  return {
    latents: Tensor.input('latents', [batch, ...latentShape]),
    noise: Tensor.input('noise', [batch, ...latentShape]),
    timestep: Tensor.input('timestep', [batch]),
    sqrtAlphaCumprod: Tensor.input('sqrt_alpha_cumprod', [batch]),
    sqrtOneMinusAlphaCumprod: Tensor.input('sqrt_one_minus_alpha_cumprod', [batch]),
  };
}

/**
 * Traces noising, the UNet on `context` [B, tokens, dim], and the ε- or v-loss; with `lossWeight`
 * ([B], e.g. `minSnrWeights`), the mean of the per-item weighted squared errors.
 */
export function diffusionLoss(
  unet: UNet2DConditionModel,
  inputs: DiffusionInputs,
  context: Tensor,
  predictionType: PredictionType = 'epsilon',
  forwardOptions: UNetForwardOptions = {},
  lossWeight?: Tensor,
): DiffusionLoss {
  const perItem = (x: Tensor) => reshape(x, [x.shape[0], 1, 1, 1]);
  const sa = perItem(inputs.sqrtAlphaCumprod);
  const s1a = perItem(inputs.sqrtOneMinusAlphaCumprod);
  const noisyLatents = add(mul(sa, inputs.latents), mul(s1a, inputs.noise));
  const prediction = unet.forward(noisyLatents, inputs.timestep, context, forwardOptions);
  let target: Tensor;
  if (predictionType === 'epsilon') target = inputs.noise;
  else if (predictionType === 'v_prediction') target = sub(mul(sa, inputs.noise), mul(s1a, inputs.latents));
  else throw new Error(`training for prediction_type "${predictionType}" is not supported (epsilon or v_prediction)`);
  const err = sub(prediction, target);
  const squared = mul(err, err);
  return { loss: mean(lossWeight ? mul(perItem(lossWeight), squared) : squared), prediction, target, noisyLatents };
}

/** Min-SNR-γ loss weights [B] for integer timesteps: min(SNR, γ)/SNR (ε) or min(SNR, γ)/(SNR + 1) (v). */
export function minSnrWeights(alphasCumprod: Float32Array, timesteps: readonly number[], gamma: number, predictionType: PredictionType = 'epsilon'): Float32Array {
  if (!(gamma > 0)) throw new Error(`min-SNR gamma must be positive, got ${gamma}`);
  if (predictionType !== 'epsilon' && predictionType !== 'v_prediction') throw new Error(`min-SNR weighting for prediction_type "${predictionType}" is not supported`);
  return Float32Array.from(timesteps, (t) => {
    const a = alphasCumprod[t];
    if (a === undefined) throw new Error(`timestep ${t} is outside [0, ${alphasCumprod.length})`);
    const snr = a / (1 - a);
    return Math.min(snr, gamma) / (predictionType === 'epsilon' ? snr : snr + 1);
  });
}

/** One batch's random draws: an integer timestep in [0, numTrainTimesteps) and N(0, 1) noise per item. */
export function drawNoising(rng: RandomSource, batch: number, latentSize: number, numTrainTimesteps: number): { timesteps: number[]; noise: Float32Array } {
  const timesteps = Array.from({ length: batch }, () => rng.randint(numTrainTimesteps));
  return { timesteps, noise: rng.randn(batch * latentSize) };
}

/**
 * Feeds for `diffusionInputs` from clean latents [B, C, h, w], noise and integer timesteps. √ᾱ and
 * √(1−ᾱ) are rounded to float32 as the reference's `add_noise` computes them.
 */
export function diffusionFeeds(
  alphasCumprod: Float32Array,
  latents: Float32Array,
  latentShape: readonly [number, number, number, number],
  noise: Float32Array,
  timesteps: readonly number[],
): Feeds {
  const [b] = latentShape;
  if (timesteps.length !== b) throw new Error(`${timesteps.length} timesteps for a batch of ${b}`);
  const sa = new Float32Array(b);
  const s1a = new Float32Array(b);
  timesteps.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t >= alphasCumprod.length) throw new Error(`timestep must be an integer in [0, ${alphasCumprod.length}), got ${t}`);
    sa[i] = Math.sqrt(alphasCumprod[t]);
    s1a[i] = Math.sqrt(Math.fround(1 - alphasCumprod[t]));
  });
  return {
    latents: { data: latents, shape: latentShape },
    noise: { data: noise, shape: latentShape },
    timestep: { data: Float32Array.from(timesteps), shape: [b] },
    sqrt_alpha_cumprod: { data: sa, shape: [b] },
    sqrt_one_minus_alpha_cumprod: { data: s1a, shape: [b] },
  };
}
