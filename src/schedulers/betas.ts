// The forward-process noise schedule: β_t for t in [0, T), α_t = 1 − β_t and ᾱ_t = ∏_{s≤t} α_s.
//
// Every sampler derives its numbers from ᾱ, so these follow the reference (diffusers on PyTorch,
// CPU, float32) bit for bit: β is a float32 tensor, and torch's CPU cumprod multiplies in double
// and rounds each partial product to float32.

const f32 = Math.fround;

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';

export interface BetaScheduleConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaSchedule;
  /** Overrides the schedule when given (diffusers' `trained_betas`). */
  trainedBetas?: readonly number[];
}

/** β_t, t in [0, numTrainTimesteps), as float32. */
export function makeBetas(config: BetaScheduleConfig): Float32Array {
  const { numTrainTimesteps: n, betaStart, betaEnd, betaSchedule, trainedBetas } = config;
  if (trainedBetas) return Float32Array.from(trainedBetas);
  switch (betaSchedule) {
    case 'linear':
      return linspaceFloat32(betaStart, betaEnd, n);
    case 'scaled_linear': {
      // Linear in √β, then squared (the Stable Diffusion schedule).
      const roots = linspaceFloat32(Math.sqrt(betaStart), Math.sqrt(betaEnd), n);
      return roots.map((r) => f32(r * r));
    }
    case 'squaredcos_cap_v2':
      return Float32Array.from(betasForAlphaBar(n));
  }
}

/** ᾱ_t = ∏_{s≤t} (1 − β_s): float32 terms, double accumulator, float32 outputs (torch CPU cumprod). */
export function alphasCumprodFromBetas(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let product = 1;
  for (let t = 0; t < betas.length; t++) {
    product *= f32(1 - betas[t]);
    out[t] = product;
  }
  return out;
}

/**
 * The cosine schedule of Nichol & Dhariwal: ᾱ(t) = cos²((t + 0.008) / 1.008 · π/2), with
 * β_i = 1 − ᾱ((i+1)/n) / ᾱ(i/n) capped at 0.999 so the last steps stay finite. Double precision.
 */
function betasForAlphaBar(n: number, maxBeta = 0.999): number[] {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const betas: number[] = [];
  for (let i = 0; i < n; i++) {
    betas.push(Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta));
  }
  return betas;
}

/**
 * `torch.linspace(start, end, steps, dtype=float32)` on CPU, reproduced to the last bit.
 *
 * torch steps by a float32 `step` from `start` over the first half and back from `end` over the
 * second, and its vectorised kernel fills 8 lanes at a time from a lane-0 base computed with a
 * fused multiply-add (base + k·step per lane); the last `steps mod 16` values take the scalar path.
 * Which values round which way depends on all of that, and β (hence ᾱ) inherits it.
 */
export function linspaceFloat32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  const s = f32(start);
  const e = f32(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f32((e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  // s + step·i and e − step·i are exact in double (24-bit × small integer), so one f32() is one fma.
  const fused = (i: number) => f32(i < halfway ? s + step * i : e - step * (steps - i - 1));
  const lanes = 8;
  const vectorised = Math.floor(steps / (2 * lanes)) * 2 * lanes;
  for (let i = 0; i < steps; i++) {
    if (i < vectorised) {
      const lane = i % lanes;
      out[i] = f32(fused(i - lane) + lane * step);
    } else {
      out[i] = fused(i);
    }
  }
  return out;
}
