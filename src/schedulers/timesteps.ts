// Which of the T training timesteps an n-step sampler visits.
//
// The three spacings of "Common Diffusion Noise Schedules and Sample Steps are Flawed" (Lin et al.),
// computed the way diffusers computes them with numpy (float64, round-half-to-even), so that the
// lists agree to the integer:
//   leading:  0, k, 2k, … (k = T // n), descending, plus steps_offset (SD-1.x: 901, 801, …, 1)
//   trailing: T − 1, T − 1 − T/n, …                                    (999, 899, …, 99)
//   linspace: n evenly spaced points over [0, T − 1]                   (999, 888, …, 0)

export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';

export interface SpacingOptions {
  /** Added to every timestep of the leading spacing (diffusers' `steps_offset`). */
  stepsOffset: number;
  /**
   * Round to integers. The ᾱ-indexed schedulers (DDPM, DDIM, PNDM, DPM-Solver) do; the σ-space
   * ones (Euler, LMS) keep linspace's fractional timesteps and interpolate σ between them.
   */
  round: boolean;
  /**
   * Space n + 1 points and drop the last (the one at the t = 0 end): DPM-Solver's linspace and
   * leading schedules. Errors still count in steps, n.
   */
  dropLast?: boolean;
}

/** Descending timesteps for `n` inference steps out of `numTrainTimesteps`. */
export function spacedTimesteps(
  spacing: TimestepSpacing,
  numTrainTimesteps: number,
  n: number,
  { stepsOffset, round, dropLast = false }: SpacingOptions,
): number[] {
  const extra = dropLast ? 1 : 0;
  if (!Number.isInteger(n) || n < 1 || n + extra > numTrainTimesteps) {
    throw new Error(`number of inference steps must be an integer in [1, ${numTrainTimesteps - extra}], got ${n}`);
  }
  const points = n + extra;
  const visited = (all: number[]) => (dropLast ? all.slice(0, -1) : all);
  switch (spacing) {
    case 'linspace': {
      const spaced = numpyLinspace(0, numTrainTimesteps - 1, points).reverse();
      return visited(round ? spaced.map(roundHalfEven) : spaced);
    }
    case 'leading': {
      // The first timestep of `steps` steps (of steps + extra points).
      const first = (steps: number) => (steps + extra - 1) * Math.floor(numTrainTimesteps / (steps + extra)) + stepsOffset;
      if (first(n) >= numTrainTimesteps) {
        // SD's steps_offset 1 at n = T lands on timestep T itself (diffusers fails there too).
        let most = n - 1;
        while (most > 1 && first(most) >= numTrainTimesteps) most--;
        throw new Error(`${n} steps with leading spacing and steps_offset ${stepsOffset} reach timestep ${first(n)}, past the last training timestep ${numTrainTimesteps - 1}: use at most ${most} steps`);
      }
      const ratio = Math.floor(numTrainTimesteps / points);
      return visited(Array.from({ length: points }, (_, i) => (points - 1 - i) * ratio + stepsOffset));
    }
    case 'trailing':
      return visited(numpyArange(numTrainTimesteps, 0, -numTrainTimesteps / points).map((t) => roundHalfEven(t) - 1));
  }
}

/**
 * Where img2img starts: with `strength` s of n steps, denoising covers the last ⌊n·s⌋ of them
 * (diffusers' `get_timesteps`). `order` is the number of timesteps the scheduler spends per step.
 */
export function img2imgStart(
  numInferenceSteps: number,
  strength: number,
  order = 1,
): { beginIndex: number; numInferenceSteps: number } {
  if (!(strength >= 0 && strength <= 1)) throw new Error(`strength must be in [0, 1], got ${strength}`);
  const initTimestep = Math.min(Math.trunc(numInferenceSteps * strength), numInferenceSteps);
  const tStart = Math.max(numInferenceSteps - initTimestep, 0);
  return { beginIndex: tStart * order, numInferenceSteps: numInferenceSteps - tStart };
}

/** `np.linspace(start, stop, num)`: start + i·step in double, the last point exactly `stop`. */
export function numpyLinspace(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out = Array.from({ length: num }, (_, i) => i * step + start);
  out[num - 1] = stop;
  return out;
}

/** `np.arange(start, stop, step)` for floats: ⌈(stop − start)/step⌉ points start + i·Δ, Δ = (start + step) − start. */
function numpyArange(start: number, stop: number, step: number): number[] {
  const length = Math.max(Math.ceil((stop - start) / step), 0);
  const delta = start + step - start;
  return Array.from({ length }, (_, i) => (i === 1 ? start + step : start + i * delta));
}

/** `np.round`: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}
