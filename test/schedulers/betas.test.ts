import { describe, expect, it } from 'vitest';
import { alphasCumprodFromBetas, linspaceFloat32, makeBetas } from '../../src/schedulers/betas.ts';
import { loadCase } from './reference.ts';

const SD1 = { numTrainTimesteps: 1000, betaStart: 0.00085, betaEnd: 0.012, betaSchedule: 'scaled_linear' } as const;

function mismatches(a: Float32Array, b: Float32Array): number {
  let count = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) count++;
  return count;
}

describe('β and ᾱ', () => {
  it('reproduce the SD-1.x schedule of diffusers bit for bit (scheduler_sd1_betas)', () => {
    const ref = loadCase('scheduler_sd1_betas');
    const betas = makeBetas(SD1);
    const alphasCumprod = alphasCumprodFromBetas(betas);
    expect(mismatches(betas, ref.floats('betas'))).toBe(0);
    expect(mismatches(alphasCumprod, ref.floats('alphas_cumprod'))).toBe(0);
  });

  it('linear: evenly spaced from beta_start to beta_end', () => {
    const betas = makeBetas({ numTrainTimesteps: 1000, betaStart: 0.0001, betaEnd: 0.02, betaSchedule: 'linear' });
    expect(betas[0]).toBe(Math.fround(0.0001));
    expect(betas[999]).toBe(Math.fround(0.02));
    expect(betas[500]).toBeCloseTo(0.0001 + (500 * (0.02 - 0.0001)) / 999, 9);
  });

  it('squaredcos_cap_v2: ᾱ follows cos²((t/T + 0.008)/1.008 · π/2), β capped at 0.999', () => {
    const T = 1000;
    const betas = makeBetas({ numTrainTimesteps: T, betaStart: 0.0001, betaEnd: 0.02, betaSchedule: 'squaredcos_cap_v2' });
    const alphasCumprod = alphasCumprodFromBetas(betas);
    const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    for (const t of [0, 100, 500, 900]) expect(alphasCumprod[t]).toBeCloseTo(alphaBar((t + 1) / T) / alphaBar(0), 5);
    expect(betas[T - 1]).toBe(Math.fround(0.999));
    expect(Math.max(...betas)).toBeLessThanOrEqual(Math.fround(0.999));
  });

  it('trained_betas are used as given', () => {
    const trainedBetas = [0.1, 0.2, 0.3];
    const betas = makeBetas({ numTrainTimesteps: 3, betaStart: 0.0001, betaEnd: 0.02, betaSchedule: 'linear', trainedBetas });
    expect([...betas]).toEqual(trainedBetas.map(Math.fround));
    expect(alphasCumprodFromBetas(betas)[2]).toBeCloseTo(0.9 * 0.8 * 0.7, 6);
  });

  it('linspaceFloat32 handles the degenerate lengths', () => {
    expect([...linspaceFloat32(1, 2, 0)]).toEqual([]);
    expect([...linspaceFloat32(1, 2, 1)]).toEqual([1]);
    expect([...linspaceFloat32(0, 1, 5)]).toEqual([0, 0.25, 0.5, 0.75, 1]);
  });
});
