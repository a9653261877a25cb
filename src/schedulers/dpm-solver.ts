// DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
// Probabilistic Models"), multistep, data-prediction form. With α_t = 1/√(σ²+1), σ_t = σ·α_t and
// λ = log(α_t/σ_t), h = λ_{t'} − λ_t, one step from t to t' is
//   first order:  x_{t'} = (σ_{t'}/σ_t)·x_t − α_{t'}·(e^{−h} − 1)·x̂₀(t)
//   second order (2M): x̂₀(t) replaced by D₀ + ½·D₁ (midpoint) with D₀ = x̂₀(t),
//                 D₁ = (x̂₀(t) − x̂₀(t_prev)) · h / (λ_t − λ_{t_prev}).
// The first step, and the last one when the schedule is short or ends at σ = 0, are first order.

import { ConfigReader, rejectUnsupported, type DiffusersSchedulerConfig } from './config.ts';
import { checkSameSize, type StepOptions, type StepResult } from './scheduler.ts';
import { SigmaScheduler, type SigmaSchedule, type SigmaSchedulerConfig } from './sigma-scheduler.ts';
import { karrasSigmas, vpNoiseLevel } from './sigmas.ts';
import { roundHalfEven, spacedTimesteps } from './timesteps.ts';

const f32 = Math.fround;

export interface DPMSolverConfig extends SigmaSchedulerConfig {
  solverOrder: 1 | 2;
  /** How D₁ enters the second-order update. */
  solverType: 'midpoint' | 'heun';
  /** Use first order on the last step(s) of schedules under 15 steps (stabler with few steps). */
  lowerOrderFinal: boolean;
  eulerAtFinal: boolean;
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

export class DPMSolverMultistepScheduler extends SigmaScheduler<DPMSolverConfig> {
  /** x̂₀ of the previous step (the multistep history). */
  private previousOriginal: Float32Array | undefined;
  /** How many steps so far, capped at solverOrder: the order the history supports. */
  private lowerOrderNums = 0;

  constructor(json: DiffusersSchedulerConfig = {}) {
    super(readDPMSolverConfig(json), 'variance-preserving');
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _options?: StepOptions): StepResult {
    checkSameSize(modelOutput, sample, 'DPMSolverMultistepScheduler');
    const index = this.currentIndex(timestep);
    const n = this.timesteps.length;
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

  /**
   * Integer timesteps. linspace and leading space n + 1 points and drop t = 0 (or its offset twin);
   * trailing spaces n. Karras σ span the whole training range (not the spaced schedule's ends),
   * each at its nearest training timestep.
   */
  protected override schedule(numInferenceSteps: number): SigmaSchedule {
    const { timestepSpacing, numTrainTimesteps, stepsOffset, useKarrasSigmas } = this.config;
    if (useKarrasSigmas) {
      const sigmas = karrasSigmas(this.trainSigmas[0], this.trainSigmas[numTrainTimesteps - 1], numInferenceSteps);
      return { timesteps: sigmas.map((s) => roundHalfEven(this.timestepAt(s))), sigmas };
    }
    const timesteps = spacedTimesteps(timestepSpacing, numTrainTimesteps, numInferenceSteps, { stepsOffset, round: true, dropLast: timestepSpacing !== 'trailing' });
    return { timesteps, sigmas: timesteps.map((t) => this.sigmaAt(t)) };
  }

  /**
   * 0 or σ_min. Karras schedules end there too, as in k-diffusion and diffusers since 0.26 (earlier
   * releases repeated σ_min there, which made the last step a no-op: huggingface/diffusers#6477).
   */
  protected override finalSigma(): number {
    return this.config.finalSigmasType === 'zero' ? 0 : this.trainSigmas[0];
  }

  protected override resetHistory(): void {
    this.previousOriginal = undefined;
    this.lowerOrderNums = 0;
  }

  private firstOrderUpdate(d0: Float32Array, sample: Float32Array, index: number): Float32Array {
    const to = vpNoiseLevel(this.sigmas[index + 1]);
    const from = vpNoiseLevel(this.sigmas[index]);
    const h = f32(to.lambda - from.lambda);
    const sampleCoeff = f32(to.sigma / from.sigma);
    const d0Coeff = f32(to.alpha * f32(f32(Math.exp(-h)) - 1));
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) out[i] = f32(sampleCoeff * sample[i]) - f32(d0Coeff * d0[i]);
    return out;
  }

  private secondOrderUpdate(m0: Float32Array, m1: Float32Array, sample: Float32Array, index: number): Float32Array {
    const to = vpNoiseLevel(this.sigmas[index + 1]);
    const s0 = vpNoiseLevel(this.sigmas[index]);
    const s1 = vpNoiseLevel(this.sigmas[index - 1]);
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
