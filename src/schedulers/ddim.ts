// DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models"), eq. 12:
//   x_{t'} = √ᾱ_{t'}·x̂₀ + √(1 − ᾱ_{t'} − σ_t²)·ε̂ + σ_t·z,
//   σ_t = η·√((1 − ᾱ_{t'}) / (1 − ᾱ_t))·√(1 − ᾱ_t / ᾱ_{t'}).
// η = 0 is the deterministic sampler (and, run forwards, DDIM inversion); η = 1 matches DDPM's
// posterior variance on the shortened schedule.

import { AlphaScheduler } from './alpha-scheduler.ts';
import { type Clipping, ConfigReader, rejectUnsupported, type CommonConfig, type DiffusersSchedulerConfig, type PredictionType } from './config.ts';
import { clipInPlace, splitPrediction } from './prediction.ts';
import { checkSameSize, stepNoise, type StepOptions, type StepResult } from './scheduler.ts';

const f32 = Math.fround;

export interface DDIMConfig extends CommonConfig, Clipping {
  setAlphaToOne: boolean;
  /** η, the default for every step (not a diffusers config field; diffusers passes it to `step`). */
  eta: number;
}

export interface DDIMStepOptions extends StepOptions {
  /** Overrides the configured η for this step. */
  eta?: number;
}

export function readDDIMConfig(json: DiffusersSchedulerConfig): DDIMConfig {
  const reader = new ConfigReader(json, 'DDIMScheduler');
  rejectUnsupported(reader);
  return {
    ...reader.common('leading'),
    ...reader.clipping(true),
    setAlphaToOne: reader.boolean('set_alpha_to_one', true),
    eta: reader.number('eta', 0, (v) => v >= 0, '≥ 0'),
  };
}

/**
 * One deterministic DDIM step between any two noise levels: x at ᾱ_from → x at ᾱ_to, through the
 * model's (x̂₀, ε̂). Going to a lower noise level denoises; going to a higher one is DDIM inversion
 * (x_{t+1} from x_t and ε(x_t, t)), as used to invert a real image for editing.
 */
export function ddimTransfer(
  sample: Float32Array,
  modelOutput: Float32Array,
  alphaProdFrom: number,
  alphaProdTo: number,
  predictionType: PredictionType = 'epsilon',
): Float32Array {
  checkSameSize(modelOutput, sample, 'ddimTransfer');
  const { predOriginal, predEpsilon } = splitPrediction(predictionType, modelOutput, sample, alphaProdFrom);
  return combine(predOriginal, predEpsilon, f32(Math.sqrt(alphaProdTo)), f32(Math.sqrt(f32(1 - alphaProdTo))));
}

export class DDIMScheduler extends AlphaScheduler<DDIMConfig> {
  constructor(json: DiffusersSchedulerConfig = {}) {
    super(readDDIMConfig(json));
  }

  /**
   * The timestep a step from `t` goes to (negative after the last one): t − T//n, as in the
   * reference. That is the schedule's next entry for leading spacing and for trailing with n
   * dividing T; elsewhere (linspace) the sample lands a few timesteps off the next one visited.
   */
  previousTimestep(t: number): number {
    if (this.numInferenceSteps === undefined) throw new Error('DDIMScheduler: call setTimesteps before step');
    return t - Math.floor(this.config.numTrainTimesteps / this.numInferenceSteps);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: DDIMStepOptions): StepResult {
    checkSameSize(modelOutput, sample, 'DDIMScheduler');
    const eta = options?.eta ?? this.config.eta;
    if (!(eta >= 0)) throw new Error(`DDIMScheduler: eta must be ≥ 0, got ${eta}`);
    const alphaProd = this.alphaProdAt(timestep);
    const alphaProdPrev = this.alphaProdAt(this.previousTimestep(timestep));
    const betaProd = f32(1 - alphaProd);
    const betaProdPrev = f32(1 - alphaProdPrev);

    const { predOriginal, predEpsilon } = splitPrediction(this.config.predictionType, modelOutput, sample, alphaProd);
    if (this.config.clipSample) clipInPlace(predOriginal, this.config.clipSampleRange);

    const variance = f32(f32(betaProdPrev / betaProd) * f32(1 - f32(alphaProd / alphaProdPrev)));
    const stdDev = f32(eta * f32(Math.sqrt(variance)));
    const directionCoeff = f32(Math.sqrt(f32(f32(1 - alphaProdPrev) - f32(stdDev * stdDev))));
    const prevSample = combine(predOriginal, predEpsilon, f32(Math.sqrt(alphaProdPrev)), directionCoeff);
    if (eta > 0) {
      const noise = stepNoise(options, sample.length, 'DDIMScheduler');
      for (let i = 0; i < prevSample.length; i++) prevSample[i] += f32(stdDev * noise[i]);
    }
    return { prevSample, predOriginalSample: predOriginal };
  }
}

/** a·x̂₀ + b·ε̂, rounding like the reference. */
function combine(predOriginal: Float32Array, predEpsilon: Float32Array, a: number, b: number): Float32Array {
  const out = new Float32Array(predOriginal.length);
  for (let i = 0; i < out.length; i++) out[i] = f32(a * predOriginal[i]) + f32(b * predEpsilon[i]);
  return out;
}
