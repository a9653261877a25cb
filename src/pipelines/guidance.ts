// Classifier-free guidance (Ho & Salimans 2022): the prediction is pushed away from the
// unconditional one, ε̃ = ε_uncond + g·(ε_cond − ε_uncond); g = 1 gives the conditional prediction.
// The one formula in two forms: over arrays for the sampling loops, and as a traced graph op for
// null-text inversion, whose loss must be differentiated through guidance to the null embedding
// (an array result has no gradient).

import { type Tensor, add, mul, sub } from '../engine/index.ts';

/** ε_uncond + g·(ε_cond − ε_uncond), element by element. */
export function guide(uncond: Float32Array, cond: Float32Array, scale: number): Float32Array {
  if (uncond.length !== cond.length) throw new Error(`guidance: unconditional prediction has ${uncond.length} values, conditional ${cond.length}`);
  const out = new Float32Array(cond.length);
  for (let i = 0; i < out.length; i++) out[i] = uncond[i] + scale * (cond[i] - uncond[i]);
  return out;
}

/** Guidance over one UNet output batched as [uncond; cond]. */
export function applyGuidance(prediction: Float32Array, scale: number): Float32Array {
  const half = prediction.length / 2;
  return guide(prediction.subarray(0, half), prediction.subarray(half), scale);
}

/** `guide` on symbolic tensors; `scale` is a tensor (e.g. a [1] graph input) broadcast over them. */
export function guideTensor(uncond: Tensor, cond: Tensor, scale: Tensor): Tensor {
  return add(uncond, mul(sub(cond, uncond), scale));
}
