// DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
// Probabilistic Models"), multistep, data-prediction form. With α_t = 1/√(σ²+1), σ_t = σ·α_t and
// λ = log(α_t/σ_t), h = λ_{t'} − λ_t, one step from t to t' is
//   first order:  x_{t'} = (σ_{t'}/σ_t)·x_t − α_{t'}·(e^{−h} − 1)·x̂₀(t)
//   second order (2M): x̂₀(t) replaced by D₀ + ½·D₁ (midpoint) with D₀ = x̂₀(t),
//                 D₁ = (x̂₀(t) − x̂₀(t_prev)) · h / (λ_t − λ_{t_prev}).
// The first step, and the last one when the schedule is short or ends at σ = 0, are first order.

import { alphasCumprodFromBetas, makeBetas } from './betas.ts';
import { ConfigReader, rejectUnsupported, type CommonConfig, type DiffusersSchedulerConfig } from './config.ts';
import { checkSameSize, timestepPerItem, type Scheduler, type StepOptions, type StepResult } from './scheduler.ts';
import { interpolate, karrasSigmas, sigmasFromAlphasCumprod, sigmaToTimestep } from './sigmas.ts';
import { roundHalfEven, spacedTimesteps } from './timesteps.ts';

const f32 = Math.fround;

export interface DPMSolverConfig extends CommonConfig {
  solverOrder: 1 | 2;
  /** How D₁ enters the second-order update. */
  solverType: 'midpoint' | 'heun';
  /** Use first order on the last step(s) of schedules under 15 steps (stabler with few steps). */
  lowerOrderFinal: boolean;
  eulerAtFinal: boolean;
  useKarrasSigmas: boolean;
  /** The σ after the last step: 0 (fully denoised) or σ_min of the training schedule. */
  finalSigmasType: 'zero' | 'sigma_min';
}

export function readDPMSolverConfig(json: DiffusersSchedulerConfig): DPMSolverConfig {
  const reader = new ConfigReader(json, 'DPMSolverMultistepScheduler');
  rejectUnsupported(reader);
  reader.unsupported('algorithm_type', (v) => v === 'dpmsolver++');
  reader.unsupported('use_lu_lambdas', (v) => v === false);
  reader.unsupported('variance_type', () => false);
  reader.unsupported('lambda_min_clipped', (v) => v === -Infinity);
  const solverOrder = reader.integer('solver_order', 2, 1);
  if (solverOrder > 2) throw new Error(`DPMSolverMultistepScheduler: solver_order=${solverOrder} is not supported (1 or 2)`);
  return {
    ...reader.common('linspace'),
    solverOrder: solverOrder as 1 | 2,
    solverType: reader.oneOf('solver_type', ['midpoint', 'heun'], 'midpoint'),
    lowerOrderFinal: reader.boolean('lower_order_final', true),
    eulerAtFinal: reader.boolean('euler_at_final', false),
    useKarrasSigmas: reader.boolean('use_karras_sigmas', false),
    finalSigmasType: reader.oneOf('final_sigmas_type', ['zero', 'sigma_min'], 'zero'),
  };
}

/** α_t = 1/√(σ² + 1) and σ_t = σ·α_t, the VP coefficients of a VE noise level, in float32. */
function alphaSigma(sigma: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  const sigmaT = f32(sigma * alpha);
  return { alpha, sigma: sigmaT, lambda: f32(f32(Math.log(alpha)) - f32(Math.log(sigmaT))) };
}

export class DPMSolverMultistepScheduler implements Scheduler {
  readonly config: DPMSolverConfig;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly alphasCumprod: Float32Array;
  /** σ_t of every training timestep, ascending with t (float32). */
  readonly trainSigmas: Float32Array;
  /** The noise levels to visit, one per timestep, then the final one. */
  sigmas: Float32Array;
  timesteps: number[];
  numInferenceSteps: number | undefined;
  private stepIndex: number | undefined;
  private beginIndex: number | undefined;
  /** x̂₀ of the previous step (the multistep history). */
  private previousOriginal: Float32Array | undefined;
  /** How many steps so far, capped at solverOrder: the order the history supports. */
  private lowerOrderNums = 0;

  constructor(json: DiffusersSchedulerConfig = {}) {
    this.config = readDPMSolverConfig(json);
    this.alphasCumprod = alphasCumprodFromBetas(makeBetas(this.config));
    this.trainSigmas = sigmasFromAlphasCumprod(this.alphasCumprod);
    const n = this.config.numTrainTimesteps;
    this.timesteps = Array.from({ length: n }, (_, i) => n - 1 - i);
    this.sigmas = Float32Array.from([...this.trainSigmas].reverse().concat(0));
  }

  setTimesteps(numInferenceSteps: number): void {
    const { timestepSpacing, numTrainTimesteps, stepsOffset, useKarrasSigmas, finalSigmasType } = this.config;
    let timesteps: number[];
    let sigmas: number[];
    if (useKarrasSigmas) {
      sigmas = karrasSigmas(this.trainSigmas[0], this.trainSigmas[numTrainTimesteps - 1], numInferenceSteps);
      const logSigmas = this.trainSigmas.map(Math.log);
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToTimestep(s, logSigmas)));
    } else {
      // linspace and leading space n + 1 points and drop t = 0 (or its offset twin); trailing spaces n.
      const spacing = { stepsOffset, round: true };
      timesteps = timestepSpacing === 'trailing'
        ? spacedTimesteps('trailing', numTrainTimesteps, numInferenceSteps, spacing)
        : spacedTimesteps(timestepSpacing, numTrainTimesteps, numInferenceSteps + 1, spacing).slice(0, -1);
      sigmas = timesteps.map((t) => interpolate(this.trainSigmas, t));
    }
    // Karras schedules end at final_sigmas_type too, as in k-diffusion and diffusers since 0.26
    // (earlier releases repeated σ_min there, which made the last step a no-op: huggingface/diffusers#6477).
    const finalSigma = finalSigmasType === 'zero' ? 0 : this.trainSigmas[0];
    this.timesteps = timesteps;
    this.sigmas = Float32Array.from([...sigmas, finalSigma]);
    this.numInferenceSteps = timesteps.length;
    this.stepIndex = undefined;
    this.beginIndex = undefined;
    this.previousOriginal = undefined;
    this.lowerOrderNums = 0;
  }

  setBeginIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.timesteps.length) {
      throw new Error(`begin index must be an integer in [0, ${this.timesteps.length}), got ${index}`);
    }
    this.beginIndex = index;
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _options?: StepOptions): StepResult {
    checkSameSize(modelOutput, sample, 'DPMSolverMultistepScheduler');
    if (this.numInferenceSteps === undefined) throw new Error('DPMSolverMultistepScheduler: call setTimesteps before step');
    this.stepIndex ??= this.beginIndex ?? this.indexForTimestep(timestep);
    const index = this.stepIndex;
    const n = this.timesteps.length;
    if (index >= n) throw new Error('DPMSolverMultistepScheduler: stepped past the last timestep');
    const { eulerAtFinal, lowerOrderFinal, finalSigmasType, solverOrder } = this.config;
    const firstOrderFinal = index === n - 1 && (eulerAtFinal || (lowerOrderFinal && n < 15) || finalSigmasType === 'zero');

    const predOriginal = this.predictOriginal(modelOutput, sample, this.sigmas[index]);
    const prevSample = solverOrder === 1 || this.lowerOrderNums < 1 || firstOrderFinal || !this.previousOriginal
      ? this.firstOrderUpdate(predOriginal, sample, index)
      : this.secondOrderUpdate(predOriginal, this.previousOriginal, sample, index);

    this.previousOriginal = predOriginal;
    this.lowerOrderNums = Math.min(this.lowerOrderNums + 1, solverOrder);
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample: predOriginal };
  }

  /** α_t·x₀ + σ_t·ε at each item's σ (at the current step once the loop has started). */
  addNoise(original: Float32Array, noise: Float32Array, timesteps: number | readonly number[]): Float32Array {
    const batch = timestepPerItem(original, noise, timesteps);
    const out = new Float32Array(original.length);
    batch.timesteps.forEach((t, b) => {
      const index = this.beginIndex === undefined ? this.indexForTimestep(t) : (this.stepIndex ?? this.beginIndex);
      const { alpha, sigma } = alphaSigma(this.sigmas[index]);
      for (let i = b * batch.itemSize; i < (b + 1) * batch.itemSize; i++) {
        out[i] = f32(alpha * original[i]) + f32(sigma * noise[i]);
      }
    });
    return out;
  }

  /** Position of `timestep` in the schedule: the second of two equal ones, the last step if absent. */
  private indexForTimestep(timestep: number): number {
    const hits = this.timesteps.flatMap((t, i) => (t === timestep ? [i] : []));
    if (hits.length === 0) return this.timesteps.length - 1;
    return hits.length > 1 ? hits[1] : hits[0];
  }

  /** x̂₀ from the model output at σ (the model saw x_t = α_t·x₀ + σ_t·ε as is). */
  private predictOriginal(modelOutput: Float32Array, sample: Float32Array, sigma: number): Float32Array {
    const { alpha, sigma: sigmaT } = alphaSigma(sigma);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) {
      switch (this.config.predictionType) {
        case 'epsilon':
          out[i] = f32(sample[i] - f32(sigmaT * modelOutput[i])) / alpha;
          break;
        case 'v_prediction':
          out[i] = f32(alpha * sample[i]) - f32(sigmaT * modelOutput[i]);
          break;
        case 'sample':
          out[i] = modelOutput[i];
          break;
      }
    }
    return out;
  }

  private firstOrderUpdate(d0: Float32Array, sample: Float32Array, index: number): Float32Array {
    const to = alphaSigma(this.sigmas[index + 1]);
    const from = alphaSigma(this.sigmas[index]);
    const h = f32(to.lambda - from.lambda);
    const sampleCoeff = f32(to.sigma / from.sigma);
    const d0Coeff = f32(to.alpha * f32(f32(Math.exp(-h)) - 1));
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) out[i] = f32(sampleCoeff * sample[i]) - f32(d0Coeff * d0[i]);
    return out;
  }

  private secondOrderUpdate(m0: Float32Array, m1: Float32Array, sample: Float32Array, index: number): Float32Array {
    const to = alphaSigma(this.sigmas[index + 1]);
    const s0 = alphaSigma(this.sigmas[index]);
    const s1 = alphaSigma(this.sigmas[index - 1]);
    const h = f32(to.lambda - s0.lambda);
    const h0 = f32(s0.lambda - s1.lambda);
    const invR0 = f32(1 / f32(h0 / h));
    const sampleCoeff = f32(to.sigma / s0.sigma);
    const expm1 = f32(f32(Math.exp(-h)) - 1);
    const d0Coeff = f32(to.alpha * expm1);
    // midpoint: −½·α_t·(e^{−h} − 1)·D₁;  heun: +α_t·((e^{−h} − 1)/h + 1)·D₁
    const d1Coeff = this.config.solverType === 'midpoint'
      ? -f32(0.5 * d0Coeff)
      : f32(to.alpha * f32(f32(expm1 / h) + 1));
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) {
      const d1 = f32(invR0 * f32(m0[i] - m1[i]));
      out[i] = f32(f32(sampleCoeff * sample[i]) - f32(d0Coeff * m0[i])) + f32(d1Coeff * d1);
    }
    return out;
  }
}
