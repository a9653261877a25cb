// Learning-rate schedules: the rate for optimiser step k (0-based) as a pure function of k, so a
// resumed run picks up the same rate from the step count alone.

export type LrSchedule = (step: number) => number;

export const LR_SCHEDULES = ['constant', 'linear', 'cosine'] as const;
export type LrScheduleName = (typeof LR_SCHEDULES)[number];

export interface LrScheduleOptions {
  kind: LrScheduleName;
  /** The peak rate, reached after warm-up. */
  lr: number;
  /** Steps of linear warm-up from lr/warmup to lr (0: none). */
  warmup?: number;
  /** Total optimiser steps; the decaying schedules reach `minLr` here. */
  totalSteps?: number;
  minLr?: number;
  /**
   * Warm restarts (SGDR, Loshchilov & Hutter 2017): the lengths of successive cycles, summing to
   * totalSteps; each warms up and decays as a whole schedule over its own length would. A run
   * lengthened by a cycle repeats the shorter run's rates exactly, so it can resume from its end.
   */
  cycles?: number[];
  /** Each cycle's peak is the one before's times this (default 1: the same peak). */
  cycleDecay?: number;
}

/** Linear ramp over the first `warmup` steps: step 0 already trains, at lr/warmup (as diffusers' warm-up does at its first update). */
function warmupFactor(step: number, warmup: number): number {
  return warmup > 0 && step < warmup ? (step + 1) / warmup : 1;
}

/**
 * constant: lr after warm-up. linear: warm-up, then linear decay to minLr at totalSteps.
 * cosine: warm-up, then half a cosine from lr down to minLr at totalSteps (Loshchilov & Hutter).
 */
export function lrSchedule(options: LrScheduleOptions): LrSchedule {
  const { cycles, cycleDecay = 1 } = options;
  if (!cycles) return oneCycle(options);
  if (options.kind === 'constant') throw new Error('learning-rate cycles need a decaying schedule (linear or cosine)');
  if (!cycles.length || cycles.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error(`learning-rate cycles must be positive step counts, got ${cycles.join(',')}`);
  const sum = cycles.reduce((a, b) => a + b, 0);
  if (sum !== options.totalSteps) throw new Error(`learning-rate cycles ${cycles.join('+')} = ${sum} steps, but the run has ${options.totalSteps}`);
  if (!(cycleDecay > 0 && cycleDecay <= 1)) throw new Error(`learning-rate cycle decay must be in (0, 1], got ${cycleDecay}`);
  const schedules = cycles.map((n, k) => oneCycle({ ...options, lr: options.lr * cycleDecay ** k, totalSteps: n }));
  const starts = cycles.map((_, k) => cycles.slice(0, k).reduce((a, b) => a + b, 0));
  return (step) => {
    let k = cycles.length - 1;
    while (k > 0 && step < starts[k]) k--;
    return schedules[k](step - starts[k]);
  };
}

function oneCycle(options: LrScheduleOptions): LrSchedule {
  const { kind, lr } = options;
  const warmup = options.warmup ?? 0;
  const minLr = options.minLr ?? 0;
  if (!(lr > 0) || !Number.isFinite(lr)) throw new Error(`learning rate must be positive, got ${lr}`);
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error(`warm-up must be a non-negative integer, got ${warmup}`);
  if (kind === 'constant') return (step) => lr * warmupFactor(step, warmup);
  const total = options.totalSteps;
  if (total === undefined || !Number.isInteger(total) || total <= 0) throw new Error(`the ${kind} schedule needs a positive totalSteps`);
  const decaySteps = Math.max(1, total - warmup);
  return (step) => {
    if (step < warmup) return lr * warmupFactor(step, warmup);
    const progress = Math.min(1, (step - warmup) / decaySteps);
    const shape = kind === 'linear' ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
    return minLr + (lr - minLr) * shape;
  };
}
