// PNDM (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds"): a linear
// multistep method on the DDIM transfer x_t → x_{t'} (eq. 11). PLMS, the Adams–Bashforth form,
// combines the last four ε:  ε' = (55ε₀ − 59ε₋₁ + 37ε₋₂ − 9ε₋₃) / 24, with lower orders while
// the history fills. The warm-up is either four Runge–Kutta (PRK) steps, or, with
// `skip_prk_steps` (what Stable Diffusion uses), one step redone with the mean of two ε: the
// schedule then has n + 1 entries, the second one repeated.

import { AlphaScheduler } from './alpha-scheduler.ts';
import { ConfigReader, rejectUnsupported, type CommonConfig, type DiffusersSchedulerConfig } from './config.ts';
import { splitPrediction } from './prediction.ts';
import { checkSameSize, type StepOptions, type StepResult } from './scheduler.ts';

const f32 = Math.fround;

export interface PNDMConfig extends CommonConfig {
  skipPrkSteps: boolean;
  setAlphaToOne: boolean;
}

export function readPNDMConfig(json: DiffusersSchedulerConfig): PNDMConfig {
  const reader = new ConfigReader(json, 'PNDMScheduler');
  rejectUnsupported(reader);
  const common = reader.common('leading');
  if (common.predictionType === 'sample') throw new Error('PNDMScheduler: prediction_type "sample" is not supported');
  return {
    ...common,
    skipPrkSteps: reader.boolean('skip_prk_steps', false),
    setAlphaToOne: reader.boolean('set_alpha_to_one', false),
  };
}

/** A model output (ε, or v with v_prediction) or a linear combination of them. */
type Eps = Float32Array;

export class PNDMScheduler extends AlphaScheduler<PNDMConfig> {
  /** The Runge–Kutta warm-up timesteps (empty with skip_prk_steps). */
  private prkTimesteps: number[] = [];
  /** Steps taken since setTimesteps. */
  private counter = 0;
  /** The last (up to) four model outputs, oldest first. */
  private ets: Eps[] = [];
  /** x at the start of a step that is evaluated more than once (warm-up). */
  private curSample: Float32Array | undefined;
  /** Runge–Kutta's running weighted sum of ε. */
  private curModelOutput: Float32Array | undefined;

  constructor(json: DiffusersSchedulerConfig = {}) {
    super(readPNDMConfig(json));
  }

  override setTimesteps(numInferenceSteps: number): void {
    super.setTimesteps(numInferenceSteps);
    const { numTrainTimesteps } = this.config;
    const ascending = [...this.timesteps].reverse();
    if (this.config.skipPrkSteps) {
      // [t₀, …, t_{n−2}, t_{n−2}, t_{n−1}] descending: the first step is taken twice.
      this.prkTimesteps = [];
      const repeated = ascending.length > 1 ? [ascending[ascending.length - 2]] : [];
      this.timesteps = [...ascending.slice(0, -1), ...repeated, ascending[ascending.length - 1]].reverse();
    } else {
      // The last three intervals as RK4 with half steps: t, t−k/2, t−k/2, t−k per interval.
      const half = Math.floor(Math.floor(numTrainTimesteps / numInferenceSteps) / 2);
      const ends = ascending.slice(-4).flatMap((t) => [t, t + half]);
      this.prkTimesteps = ends.slice(0, -1).flatMap((t) => [t, t]).slice(1, -1).reverse();
      this.timesteps = [...this.prkTimesteps, ...ascending.slice(0, -3).reverse()];
    }
    this.counter = 0;
    this.ets = [];
    this.curSample = undefined;
    this.curModelOutput = undefined;
  }

  // setBeginIndex stays a no-op: the warm-up simply starts wherever the loop starts (img2img), as in the reference.

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _options?: StepOptions): StepResult {
    checkSameSize(modelOutput, sample, 'PNDMScheduler');
    if (this.numInferenceSteps === undefined) throw new Error('PNDMScheduler: call setTimesteps before step');
    const result = this.counter < this.prkTimesteps.length
      ? this.stepPrk(modelOutput, timestep, sample)
      : this.stepPlms(modelOutput, timestep, sample);
    this.counter++;
    return result;
  }

  private get stride(): number {
    return Math.floor(this.config.numTrainTimesteps / (this.numInferenceSteps ?? 1));
  }

  private stepPrk(eps: Eps, timestep: number, sample: Float32Array): StepResult {
    const phase = this.counter % 4;
    const prevTimestep = timestep - (this.counter % 2 ? 0 : Math.floor(this.stride / 2));
    const startTimestep = this.prkTimesteps[this.counter - phase];
    let combined: Eps;
    if (phase === 0) {
      this.curModelOutput = scaled(eps, SIXTH);
      this.ets.push(eps);
      this.curSample = sample;
      combined = eps;
    } else if (phase === 1 || phase === 2) {
      this.curModelOutput = axpy(this.curModelOutput!, eps, THIRD);
      combined = eps;
    } else {
      combined = axpy(this.curModelOutput!, eps, SIXTH);
      this.curModelOutput = undefined;
    }
    return this.transfer(this.curSample ?? sample, startTimestep, prevTimestep, combined);
  }

  private stepPlms(eps: Eps, timestep: number, sample: Float32Array): StepResult {
    let from = timestep;
    let to = timestep - this.stride;
    if (this.counter === 1) {
      // The warm-up repeat: redo the first step with the mean of its ε and this one.
      to = timestep;
      from = timestep + this.stride;
    } else {
      this.ets = [...this.ets.slice(-3), eps];
    }
    const ets = this.ets;
    const e = (k: number) => ets[ets.length - 1 - k];
    let combined: Eps;
    if (ets.length === 1 && this.counter === 0) {
      combined = eps;
      this.curSample = sample;
    } else if (ets.length === 1 && this.counter === 1) {
      combined = mix([eps, e(0)], [1, 1], (sum) => sum / 2);
      sample = this.curSample!;
      this.curSample = undefined;
    } else if (ets.length === 2) {
      combined = mix([e(0), e(1)], [3, -1], (sum) => sum / 2);
    } else if (ets.length === 3) {
      combined = mix([e(0), e(1), e(2)], [23, -16, 5], (sum) => sum / 12);
    } else {
      combined = mix([e(0), e(1), e(2), e(3)], [55, -59, 37, -9], (sum) => ONE_24TH * sum);
    }
    return this.transfer(sample, from, to, combined);
  }

  /**
   * The DDIM transfer x_t → x_{t'} for a given ε, in the form of PNDM's eq. 11:
   *   x_{t'} = √(ᾱ_{t'}/ᾱ_t)·x_t − (ᾱ_{t'} − ᾱ_t)·ε / (ᾱ_t·√(1−ᾱ_{t'}) + √(ᾱ_t·(1−ᾱ_t)·ᾱ_{t'})).
   * With v_prediction the combined v is turned into ε here, at the transfer's own x_t and t.
   */
  private transfer(sample: Float32Array, t: number, prevT: number, modelOutput: Eps): StepResult {
    const alphaProd = this.alphaProdAt(t);
    const alphaProdPrev = this.alphaProdAt(prevT);
    const betaProd = f32(1 - alphaProd);
    const betaProdPrev = f32(1 - alphaProdPrev);
    const { predOriginal, predEpsilon: eps } = splitPrediction(this.config.predictionType, modelOutput, sample, alphaProd);
    const sampleCoeff = f32(Math.sqrt(f32(alphaProdPrev / alphaProd)));
    const denominator = f32(
      f32(alphaProd * f32(Math.sqrt(betaProdPrev))) + f32(Math.sqrt(f32(f32(alphaProd * betaProd) * alphaProdPrev))),
    );
    const epsCoeff = f32(alphaProdPrev - alphaProd);
    const prevSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      prevSample[i] = f32(sampleCoeff * sample[i]) - f32(f32(epsCoeff * eps[i]) / denominator);
    }
    return { prevSample, predOriginalSample: predOriginal };
  }
}

// Python-float weights meet float32 tensors: the reference rounds them to float32 first (and
// multiplies by 1/24 rather than dividing by 24).
const SIXTH = f32(1 / 6);
const THIRD = f32(1 / 3);
const ONE_24TH = f32(1 / 24);

/** normalise(Σ_k weights[k]·terms[k]), accumulated in float32 in the reference's order. */
function mix(terms: Eps[], weights: number[], normalise: (sum: number) => number): Eps {
  const out = new Float32Array(terms[0].length);
  for (let i = 0; i < out.length; i++) {
    let acc = f32(weights[0] * terms[0][i]);
    for (let k = 1; k < terms.length; k++) acc = f32(acc + f32(weights[k] * terms[k][i]));
    out[i] = normalise(acc);
  }
  return out;
}

/** a·x */
function scaled(x: Eps, a: number): Eps {
  return x.map((v) => a * v);
}

/** y + a·x */
function axpy(y: Eps, x: Eps, a: number): Eps {
  return y.map((v, i) => v + f32(a * x[i]));
}
