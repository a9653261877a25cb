// Reading a diffusers `scheduler_config.json`: its field names, each scheduler class's defaults for
// absent fields, and a clear error for a value that is out of range or a feature Nuri lacks.
// Fields of other scheduler classes (a PNDM config's `skip_prk_steps` read by DDIM, `_class_name`,
// …) are ignored, as diffusers ignores them when a config is shared between classes.

import type { BetaSchedule } from './betas.ts';
import type { TimestepSpacing } from './timesteps.ts';

/** A scheduler_config.json as diffusers writes it; every field optional. */
export type DiffusersSchedulerConfig = Readonly<Record<string, unknown>>;

export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';

/** The fields every scheduler here reads. */
export interface CommonConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaSchedule;
  trainedBetas?: number[];
  stepsOffset: number;
  predictionType: PredictionType;
  timestepSpacing: TimestepSpacing;
}

/** diffusers' defaults shared by these classes (LCM's β differ, and `timestep_spacing` by class). */
const COMMON_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear' as BetaSchedule,
  steps_offset: 0,
  prediction_type: 'epsilon' as PredictionType,
};

/** The β schedule defaults of a class whose own differ from COMMON_DEFAULTS. */
export type BetaDefaults = Partial<Pick<typeof COMMON_DEFAULTS, 'beta_start' | 'beta_end' | 'beta_schedule'>>;

/** `clip_sample`: clamp x̂₀ to [−range, range] before the step. */
export interface Clipping {
  clipSample: boolean;
  clipSampleRange: number;
}

/** Far above any released model's 1000, far below what takes long to build. */
export const MAX_TRAIN_TIMESTEPS = 100_000;

export class ConfigReader {
  constructor(
    private readonly json: DiffusersSchedulerConfig,
    private readonly className: string,
  ) {
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      throw new Error(`${className}: scheduler config must be a JSON object`);
    }
  }

  common(defaultSpacing: TimestepSpacing, betaDefaults: BetaDefaults = {}): CommonConfig {
    const defaults = { ...COMMON_DEFAULTS, ...betaDefaults };
    // Bounded: the betas and cumulative alphas are arrays of this length, built up front.
    const numTrainTimesteps = this.integer('num_train_timesteps', defaults.num_train_timesteps, 2, MAX_TRAIN_TIMESTEPS);
    const betaStart = this.number('beta_start', defaults.beta_start, (v) => v > 0 && v < 1, 'in (0, 1)');
    const betaEnd = this.number('beta_end', defaults.beta_end, (v) => v > 0 && v < 1, 'in (0, 1)');
    const betaSchedule = this.oneOf('beta_schedule', ['linear', 'scaled_linear', 'squaredcos_cap_v2'], defaults.beta_schedule);
    const trainedBetas = this.trainedBetas(numTrainTimesteps);
    return {
      numTrainTimesteps,
      betaStart,
      betaEnd,
      betaSchedule,
      ...(trainedBetas ? { trainedBetas } : {}),
      stepsOffset: this.integer('steps_offset', defaults.steps_offset, 0, numTrainTimesteps - 1),
      predictionType: this.oneOf('prediction_type', ['epsilon', 'v_prediction', 'sample'], defaults.prediction_type),
      timestepSpacing: this.oneOf('timestep_spacing', ['leading', 'trailing', 'linspace'], defaultSpacing),
    };
  }

  clipping(defaultClip: boolean): Clipping {
    return {
      clipSample: this.boolean('clip_sample', defaultClip),
      clipSampleRange: this.number('clip_sample_range', 1, (v) => v > 0, '> 0'),
    };
  }

  /** The field's value, or `fallback` when it is absent or null (diffusers writes null for "unset"). */
  private raw(field: string): unknown {
    const value = this.json[field];
    return value === null ? undefined : value;
  }

  boolean(field: string, fallback: boolean): boolean {
    const value = this.raw(field) ?? fallback;
    if (typeof value !== 'boolean') this.fail(field, value, 'a boolean');
    return value;
  }

  number(field: string, fallback: number, valid: (v: number) => boolean = () => true, range = 'finite'): number {
    const value = this.raw(field) ?? fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || !valid(value)) this.fail(field, value, `a number ${range}`);
    return value;
  }

  integer(field: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const value = this.raw(field) ?? fallback;
    if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
      this.fail(field, value, max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer from ${min} to ${max}`);
    }
    return value as number;
  }

  oneOf<const T extends string>(field: string, allowed: readonly T[], fallback: T): T {
    const value = this.raw(field) ?? fallback;
    if (!allowed.includes(value as T)) this.fail(field, value, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
    return value as T;
  }

  /** Throws when a field asks for a feature these schedulers do not implement. */
  unsupported(field: string, isDefault: (value: unknown) => boolean): void {
    const value = this.raw(field);
    if (value !== undefined && !isDefault(value)) {
      throw new Error(`${this.className}: "${field}" ${JSON.stringify(value)} is not supported`);
    }
  }

  private trainedBetas(numTrainTimesteps: number): number[] | undefined {
    const value = this.raw('trained_betas');
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || !value.every((b) => typeof b === 'number' && b > 0 && b < 1)) {
      this.fail('trained_betas', '[…]', 'an array of numbers in (0, 1)');
    }
    if (value.length !== numTrainTimesteps) {
      this.fail('trained_betas', `[${value.length} values]`, `num_train_timesteps (${numTrainTimesteps}) values`);
    }
    return value as number[];
  }

  /** The checkpoint layer's error style (models/checkpoint/config-reader.ts), after the class name. */
  private fail(field: string, value: unknown, expected: string): never {
    const shown = typeof value === 'string' && value.startsWith('[') ? value : JSON.stringify(value);
    throw new Error(`${this.className}: "${field}" must be ${expected}, got ${shown}`);
  }
}

/** Fields of diffusers' schedulers that switch on behaviour Nuri does not implement. */
export function rejectUnsupported(reader: ConfigReader): void {
  reader.unsupported('thresholding', (v) => v === false);
  reader.unsupported('rescale_betas_zero_snr', (v) => v === false);
  reader.unsupported('timestep_type', (v) => v === 'discrete');
}
