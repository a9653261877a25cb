// σ-space: the variance-exploding view of the same process (Karras et al. 2022). With
// x_σ = x_t / √ᾱ_t the forward process is x_σ = x_0 + σ·ε, σ_t = √((1 − ᾱ_t) / ᾱ_t).
// Euler, Euler ancestral, LMS and DPM-Solver step along a descending σ list ending in 0.

const f32 = Math.fround;

/** σ_t for every training timestep, computed in float32 like the reference. */
export function sigmasFromAlphasCumprod(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
}

/**
 * A VE noise level σ in variance-preserving terms: x_t = α_t·x₀ + σ_t·ε with α_t = 1/√(σ² + 1),
 * σ_t = σ·α_t, and the log signal-to-noise ratio λ = log(α_t/σ_t) that DPM-Solver steps in
 * (float32, in the reference's order).
 */
export function vpNoiseLevel(sigma: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  const sigmaT = f32(sigma * alpha);
  return { alpha, sigma: sigmaT, lambda: f32(f32(Math.log(alpha)) - f32(Math.log(sigmaT))) };
}

/** `np.interp(x, [0, 1, …, n−1], values)`: σ at (possibly fractional) timesteps. */
export function interpolate(values: ArrayLike<number>, x: number): number {
  const last = values.length - 1;
  if (x <= 0) return values[0];
  if (x >= last) return values[last];
  const j = Math.floor(x);
  if (x === j) return values[j];
  const slope = values[j + 1] - values[j];
  return slope * (x - j) + values[j];
}

/**
 * The noise levels of Karras et al. (2022), eq. 5: n points uniform in σ^(1/ρ) from σ_max down to
 * σ_min, ρ = 7, which spends more of the steps at low noise.
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number, rho = 7): number[] {
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  return Array.from({ length: n }, (_, i) => {
    const ramp = n === 1 ? 0 : i / (n - 1);
    return (maxInvRho + ramp * (minInvRho - maxInvRho)) ** rho;
  });
}

/**
 * The (fractional) training timestep whose σ is `sigma`: linear interpolation in log σ between
 * the two neighbouring training timesteps, clamped to [0, T − 1]. `logSigmas` ascends with t.
 */
export function sigmaToTimestep(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // The last index whose log σ is ≤ log σ (0 when there is none), at most T − 2.
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i] >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const w = Math.min(Math.max((logSigmas[low] - logSigma) / (logSigmas[low] - logSigmas[low + 1]), 0), 1);
  return (1 - w) * low + w * (low + 1);
}

/**
 * Position of `timestep` in a schedule. When it occurs twice (a schedule that begins mid-way, as in
 * img2img), the second occurrence is the one meant, so no σ is skipped on the first step.
 */
export function indexForTimestep(timesteps: readonly number[], timestep: number): number {
  const hits: number[] = [];
  timesteps.forEach((t, i) => {
    if (t === timestep) hits.push(i);
  });
  if (hits.length === 0) throw new Error(`timestep ${timestep} is not in the schedule [${timesteps.join(', ')}]`);
  return hits.length > 1 ? hits[1] : hits[0];
}
