// Euler ancestral (k-diffusion's `sample_euler_ancestral`): an Euler step down to σ_down, then
// fresh noise of size σ_up, split so that the marginal at σ' is right:
//   σ_up = √(σ'²·(σ² − σ'²) / σ²),  σ_down = √(σ'² − σ_up²),
//   x_{σ'} = x_σ + (σ_down − σ)·(x_σ − x̂₀) / σ + σ_up·z.

import type { DiffusersSchedulerConfig } from './config.ts';
import { checkSameSize, stepNoise, type StepOptions, type StepResult } from './scheduler.ts';
import { readSigmaSchedulerConfig, SigmaScheduler } from './sigma-scheduler.ts';

const f32 = Math.fround;

/** The ancestral split of a step from σ to σ' (both float32). */
export function ancestralStep(sigmaFrom: number, sigmaTo: number): { sigmaUp: number; sigmaDown: number } {
  const to2 = f32(sigmaTo * sigmaTo);
  const from2 = f32(sigmaFrom * sigmaFrom);
  const sigmaUp = f32(Math.sqrt(f32(f32(to2 * f32(from2 - to2)) / from2)));
  const sigmaDown = f32(Math.sqrt(f32(to2 - f32(sigmaUp * sigmaUp))));
  return { sigmaUp, sigmaDown };
}

export class EulerAncestralDiscreteScheduler extends SigmaScheduler {
  constructor(json: DiffusersSchedulerConfig = {}) {
    super(readSigmaSchedulerConfig(json, 'EulerAncestralDiscreteScheduler'));
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult {
    checkSameSize(modelOutput, sample, 'EulerAncestralDiscreteScheduler');
    const index = this.currentIndex(timestep);
    const sigma = this.sigmas[index];
    const { sigmaUp, sigmaDown } = ancestralStep(sigma, this.sigmas[index + 1]);
    const dt = f32(sigmaDown - sigma);
    const predOriginal = this.predictOriginal(modelOutput, sample, sigma);
    const noise = stepNoise(options, sample.length, 'EulerAncestralDiscreteScheduler');
    const prevSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const derivative = f32(f32(sample[i] - predOriginal[i]) / sigma);
      const deterministic = f32(sample[i] + f32(derivative * dt));
      prevSample[i] = deterministic + f32(noise[i] * sigmaUp);
    }
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample: predOriginal };
  }
}
