// What the UNet predicts, turned into (x₀, ε) at a timestep with cumulative ᾱ:
//   x_t = √ᾱ·x₀ + √(1−ᾱ)·ε
//   epsilon:      ε given;  x₀ = (x_t − √(1−ᾱ)·ε) / √ᾱ
//   sample:       x₀ given; ε  = (x_t − √ᾱ·x₀) / √(1−ᾱ)
//   v_prediction: v = √ᾱ·ε − √(1−ᾱ)·x₀ given; x₀ = √ᾱ·x_t − √(1−ᾱ)·v, ε = √ᾱ·v + √(1−ᾱ)·x_t
// Each operation rounds to float32, in the reference's order.

import type { PredictionType } from './config.ts';

const f32 = Math.fround;

export interface Prediction {
  predOriginal: Float32Array;
  predEpsilon: Float32Array;
}

export function splitPrediction(
  predictionType: PredictionType,
  modelOutput: Float32Array,
  sample: Float32Array,
  alphaProd: number,
): Prediction {
  const sqrtAlpha = f32(Math.sqrt(alphaProd));
  const sqrtBeta = f32(Math.sqrt(f32(1 - alphaProd)));
  const n = sample.length;
  const predOriginal = new Float32Array(n);
  const predEpsilon = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const m = modelOutput[i];
    const x = sample[i];
    switch (predictionType) {
      case 'epsilon':
        predOriginal[i] = f32(x - f32(sqrtBeta * m)) / sqrtAlpha;
        predEpsilon[i] = m;
        break;
      case 'sample':
        predOriginal[i] = m;
        predEpsilon[i] = f32(x - f32(sqrtAlpha * m)) / sqrtBeta;
        break;
      case 'v_prediction':
        predOriginal[i] = f32(sqrtAlpha * x) - f32(sqrtBeta * m);
        predEpsilon[i] = f32(sqrtAlpha * m) + f32(sqrtBeta * x);
        break;
    }
  }
  return { predOriginal, predEpsilon };
}

/** Clamps x₀ to [−range, range] in place (`clip_sample`). */
export function clipInPlace(values: Float32Array, range: number): Float32Array {
  for (let i = 0; i < values.length; i++) values[i] = Math.min(Math.max(values[i], -range), range);
  return values;
}
