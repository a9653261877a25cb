import { describe, expect, it } from 'vitest';
import { Generator } from '../../src/engine/index.ts';
import { type Embeddings, frechetDistance, meanAndCovariance, retrievalTopK, symmetricEigen } from '../../src/training/frechet.ts';

const rows = (...points: number[][]): Float32Array[] => points.map((p) => Float32Array.from(p));

/** n samples in `dim` dimensions with correlated coordinates: x = A z + shift, z ~ N(0, I). */
function correlated(seed: number, n: number, dim: number, shift: number): Embeddings {
  const rng = new Generator(seed);
  const mix = rng.randn(dim * dim);
  const z = rng.randn(n * dim);
  const data = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < dim; r++) {
      let s = shift;
      for (let c = 0; c < dim; c++) s += mix[r * dim + c] * z[i * dim + c];
      data[i * dim + r] = s;
    }
  }
  return { data, n, dim };
}

describe('frechetDistance', () => {
  it('is 0 between a set and itself', () => {
    const x = correlated(1, 50, 8, 0.5);
    expect(Math.abs(frechetDistance(x, x))).toBeLessThan(1e-6);
  });

  it('is (μ1 − μ2)² + (σ1 − σ2)² in one dimension', () => {
    // [1, 2, 3, 4]: mean 2.5, unbiased variance 5/3; [0, 4, 8]: mean 4, variance 16.
    const want = 1.5 ** 2 + (Math.sqrt(5 / 3) - 4) ** 2;
    expect(frechetDistance(rows([1], [2], [3], [4]), rows([0], [4], [8]))).toBeCloseTo(want, 10);
  });

  it('is |Δμ|² + Σ (σa,i − σb,i)² for diagonal covariances', () => {
    // Points on the axes, so the cross terms vanish: a has variances (2/3, 8/3, 0) about 0; b has
    // (8/3, 2/3, 2/3) about (3, 1, 0). The larger variance sits on a different axis in each, so
    // pairing sorted eigenvalues instead of matrices would give a different answer.
    const a = rows([1, 0, 0], [-1, 0, 0], [0, 2, 0], [0, -2, 0]);
    const b = rows([5, 1, 0], [1, 1, 0], [3, 2, 0], [3, 0, 0], [3, 1, 1], [3, 1, -1]);
    const sa = [2 / 3, 8 / 3, 0].map(Math.sqrt);
    const sb = [8 / 5, 2 / 5, 2 / 5].map(Math.sqrt);
    const want = 3 ** 2 + 1 ** 2 + sa.reduce((s, v, i) => s + (v - sb[i]) ** 2, 0);
    const { covariance } = meanAndCovariance({ data: Float32Array.from(b.flatMap((r) => [...r])), n: b.length, dim: 3 });
    expect([...covariance]).toEqual([8 / 5, 0, 0, 0, 2 / 5, 0, 0, 0, 2 / 5].map((v) => expect.closeTo(v, 12)));
    expect(frechetDistance(a, b)).toBeCloseTo(want, 9);
  });

  it('is symmetric when the covariances do not commute', () => {
    const a = correlated(2, 40, 6, 0);
    const b = correlated(3, 30, 6, 1);
    const ab = frechetDistance(a, b);
    expect(ab).toBeGreaterThan(1);
    expect(frechetDistance(b, a)).toBeCloseTo(ab, 8);
  });

  it('rejects sets of different widths', () => {
    expect(() => frechetDistance(rows([1, 2], [3, 4]), rows([1], [2]))).toThrow(/width/);
  });
});

describe('symmetricEigen', () => {
  it('reconstructs the matrix from its eigenpairs', () => {
    const dim = 5;
    const { covariance } = meanAndCovariance(correlated(4, 20, dim, 0));
    const { values, vectors } = symmetricEigen(covariance, dim);
    for (let i = 0; i < dim; i++) {
      for (let j = 0; j < dim; j++) {
        let s = 0;
        for (let e = 0; e < dim; e++) s += vectors[i * dim + e] * values[e] * vectors[j * dim + e];
        expect(s).toBeCloseTo(covariance[i * dim + j], 10);
      }
    }
  });
});

describe('retrievalTopK', () => {
  const unit = (deg: number) => [Math.cos((deg * Math.PI) / 180), Math.sin((deg * Math.PI) / 180)];
  const emb = (...degs: number[]): Embeddings => ({ data: Float32Array.from(degs.flatMap(unit)), n: degs.length, dim: 2 });

  it('counts hits at each k, with repeated captions as one', () => {
    // Captions at 0°, 40°, 80°, and a second "cat" row at 0°.
    const captions = ['cat', 'dog', 'fox', 'cat'];
    const captionEmbeds = emb(0, 40, 80, 0);
    // Image 0 (cat) at 5°: nearest cat → top-1 hit. Image 1 (dog) at 5°: ranks cat, dog → top-2.
    // Image 2 (fox) at -10°: ranks cat, dog, fox → top-3 (the second cat row does not push it to 4th).
    // Image 3 (cat) at 75°: ranks fox, dog, cat → top-3.
    const images = emb(5, 5, -10, 75);
    expect(retrievalTopK(images, captionEmbeds, captions, [1, 2, 3])).toEqual([0.25, 0.5, 1]);
  });

  it('checks that the sets match', () => {
    expect(() => retrievalTopK(emb(0, 1), emb(0), ['a', 'b'], [1])).toThrow(/retrieval/);
  });
});
