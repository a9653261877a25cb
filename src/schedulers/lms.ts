// Linear multistep (k-diffusion's `sample_lms`): the ODE dx/dσ = d(σ) = (x − x̂₀)/σ integrated
// over [σ_i, σ_{i+1}] through the Lagrange polynomial of the last (up to 4) derivatives:
//   x_{i+1} = x_i + Σ_k c_k·d_{i−k},   c_k = ∫_{σ_i}^{σ_{i+1}} ∏_{j≠k} (τ − σ_{i−j}) / (σ_{i−k} − σ_{i−j}) dτ.

import type { DiffusersSchedulerConfig } from './config.ts';
import { checkSameSize, type StepOptions, type StepResult } from './scheduler.ts';
import { readSigmaSchedulerConfig, SigmaScheduler } from './sigma-scheduler.ts';

const f32 = Math.fround;

export interface LMSStepOptions extends StepOptions {
  /** The most past derivatives to combine (diffusers' `order`, default 4). */
  order?: number;
}

/**
 * c_k for the step from sigmas[i] to sigmas[i+1] with the given order. The integrand is a
 * polynomial of degree order − 1 ≤ 3, so 3-point Gauss–Legendre quadrature is exact.
 */
export function lmsCoefficient(sigmas: ArrayLike<number>, order: number, i: number, k: number): number {
  const basis = (tau: number) => {
    let product = 1;
    for (let j = 0; j < order; j++) {
      if (j !== k) product *= (tau - sigmas[i - j]) / (sigmas[i - k] - sigmas[i - j]);
    }
    return product;
  };
  const a = sigmas[i];
  const b = sigmas[i + 1];
  const mid = (a + b) / 2;
  const half = (b - a) / 2;
  const node = Math.sqrt(3 / 5);
  return half * ((5 / 9) * basis(mid - half * node) + (8 / 9) * basis(mid) + (5 / 9) * basis(mid + half * node));
}

export class LMSDiscreteScheduler extends SigmaScheduler {
  /** The last (up to `order`) derivatives d = (x − x̂₀)/σ, oldest first. */
  private derivatives: Float32Array[] = [];

  constructor(json: DiffusersSchedulerConfig = {}) {
    super(readSigmaSchedulerConfig(json, 'LMSDiscreteScheduler'));
  }

  protected override resetHistory(): void {
    this.derivatives = [];
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: LMSStepOptions): StepResult {
    checkSameSize(modelOutput, sample, 'LMSDiscreteScheduler');
    const maxOrder = options?.order ?? 4;
    if (!Number.isInteger(maxOrder) || maxOrder < 1) throw new Error(`LMSDiscreteScheduler: order must be a positive integer, got ${maxOrder}`);
    const index = this.currentIndex(timestep);
    const sigma = this.sigmas[index];
    const predOriginal = this.predictOriginal(modelOutput, sample, sigma);
    const derivative = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) derivative[i] = f32(sample[i] - predOriginal[i]) / sigma;
    this.derivatives = [...this.derivatives, derivative].slice(-maxOrder);

    // The history, not the index, bounds the order when the loop begins mid-schedule (img2img).
    const order = Math.min(index + 1, maxOrder, this.derivatives.length);
    const coefficients = Array.from({ length: order }, (_, k) => f32(lmsCoefficient(this.sigmas, order, index, k)));
    const prevSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      let update = 0;
      for (let k = 0; k < order; k++) update = f32(update + f32(coefficients[k] * this.derivatives[this.derivatives.length - 1 - k][i]));
      prevSample[i] = sample[i] + update;
    }
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample: predOriginal };
  }
}
