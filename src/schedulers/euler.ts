// Euler's method on the probability-flow ODE in σ-space (Karras et al. 2022, Algorithm 2 without
// churn): dx/dσ = (x − x̂₀) / σ, so x_{σ'} = x_σ + (σ' − σ)·(x_σ − x̂₀) / σ. Deterministic.

import type { DiffusersSchedulerConfig } from './config.ts';
import { checkSameSize, type StepOptions, type StepResult } from './scheduler.ts';
import { readSigmaSchedulerConfig, SigmaScheduler } from './sigma-scheduler.ts';

const f32 = Math.fround;

export class EulerDiscreteScheduler extends SigmaScheduler {
  constructor(json: DiffusersSchedulerConfig = {}) {
    super(readSigmaSchedulerConfig(json, 'EulerDiscreteScheduler'));
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _options?: StepOptions): StepResult {
    checkSameSize(modelOutput, sample, 'EulerDiscreteScheduler');
    const index = this.currentIndex(timestep);
    const sigma = this.sigmas[index];
    const dt = f32(this.sigmas[index + 1] - sigma);
    const predOriginal = this.predictOriginal(modelOutput, sample, sigma);
    const prevSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const derivative = f32(f32(sample[i] - predOriginal[i]) / sigma);
      prevSample[i] = sample[i] + f32(derivative * dt);
    }
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample: predOriginal };
  }
}
