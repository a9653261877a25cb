// Two measures of a set of generated images in a CLIP embedding space, for judging a text-to-image
// model against real images:
//
//   frechetDistance   the Fréchet distance between Gaussians fitted to two sets of embeddings
//                     (FID's formula, Heusel et al. 2017, over CLIP image embeddings instead of
//                     Inception features): |μa − μb|² + tr(Σa + Σb − 2 (Σa Σb)^½)
//   retrievalTopK     image→caption retrieval: how often an image's own caption is among the k
//                     captions most similar to it
//
// The matrix square root needs a symmetric eigen-decomposition, done here by the cyclic Jacobi
// method in float64: a few dozen lines for matrices of CLIP's width (128–1024), accurate to machine
// precision for symmetric input, and no dependency for one routine.

/** N row vectors of width `dim`, row-major in `data`. */
export interface Embeddings {
  data: Float32Array;
  n: number;
  dim: number;
}

function asEmbeddings(x: readonly Float32Array[] | Embeddings): Embeddings {
  if (!Array.isArray(x)) {
    const e = x as Embeddings;
    if (e.data.length !== e.n * e.dim) throw new Error(`embeddings: ${e.data.length} values are not ${e.n} × ${e.dim}`);
    return e;
  }
  const rows = x as readonly Float32Array[];
  const dim = rows[0]?.length ?? 0;
  const data = new Float32Array(rows.length * dim);
  rows.forEach((row, i) => {
    if (row.length !== dim) throw new Error(`embeddings: row ${i} has ${row.length} values, row 0 has ${dim}`);
    data.set(row, i * dim);
  });
  return { data, n: rows.length, dim };
}

/** Mean and unbiased covariance (divided by N − 1), float64; the covariance is d × d row-major. */
export function meanAndCovariance(x: Embeddings): { mean: Float64Array; covariance: Float64Array } {
  const { data, n, dim } = x;
  if (n < 2) throw new Error(`a covariance needs at least 2 samples, got ${n}`);
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j] += data[i * dim + j];
  for (let j = 0; j < dim; j++) mean[j] /= n;
  const covariance = new Float64Array(dim * dim);
  const centred = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) centred[j] = data[i * dim + j] - mean[j];
    for (let j = 0; j < dim; j++) {
      const cj = centred[j];
      for (let k = j; k < dim; k++) covariance[j * dim + k] += cj * centred[k];
    }
  }
  for (let j = 0; j < dim; j++) {
    for (let k = j; k < dim; k++) covariance[k * dim + j] = covariance[j * dim + k] /= n - 1;
  }
  return { mean, covariance };
}

/**
 * Eigenvalues and eigenvectors (the columns of `vectors`, row-major d × d) of a symmetric matrix,
 * by cyclic Jacobi rotations (Numerical Recipes §11.1). The input is not modified.
 */
export function symmetricEigen(matrix: Float64Array, dim: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) v[i * dim + i] = 1;
  let scale = 0;
  for (const x of a) scale += x * x;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < dim; p++) for (let q = p + 1; q < dim; q++) off += a[p * dim + q] ** 2;
    if (off <= 1e-30 * scale) break;
    for (let p = 0; p < dim; p++) {
      for (let q = p + 1; q < dim; q++) {
        const apq = a[p * dim + q];
        if (apq === 0) continue;
        // The rotation in the (p, q) plane that zeroes a[p][q].
        const theta = (a[q * dim + q] - a[p * dim + p]) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < dim; k++) {
          const akp = a[k * dim + p];
          const akq = a[k * dim + q];
          a[k * dim + p] = c * akp - s * akq;
          a[k * dim + q] = s * akp + c * akq;
        }
        for (let k = 0; k < dim; k++) {
          const apk = a[p * dim + k];
          const aqk = a[q * dim + k];
          a[p * dim + k] = c * apk - s * aqk;
          a[q * dim + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < dim; k++) {
          const vkp = v[k * dim + p];
          const vkq = v[k * dim + q];
          v[k * dim + p] = c * vkp - s * vkq;
          v[k * dim + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  return { values: Float64Array.from({ length: dim }, (_, i) => a[i * dim + i]), vectors: v };
}

/** V diag(f(λ)) Vᵀ for a symmetric matrix. */
function spectralMap(matrix: Float64Array, dim: number, f: (lambda: number) => number): Float64Array {
  const { values, vectors } = symmetricEigen(matrix, dim);
  const out = new Float64Array(dim * dim);
  for (let e = 0; e < dim; e++) {
    const fe = f(values[e]);
    if (fe === 0) continue;
    for (let i = 0; i < dim; i++) {
      const vi = vectors[i * dim + e] * fe;
      for (let j = 0; j < dim; j++) out[i * dim + j] += vi * vectors[j * dim + e];
    }
  }
  return out;
}

function matmul(a: Float64Array, b: Float64Array, dim: number): Float64Array {
  const out = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) {
    for (let k = 0; k < dim; k++) {
      const aik = a[i * dim + k];
      for (let j = 0; j < dim; j++) out[i * dim + j] += aik * b[k * dim + j];
    }
  }
  return out;
}

// Covariances are PSD, but rounding leaves eigenvalues of rank-deficient ones a hair below zero.
const clampedSqrt = (lambda: number) => Math.sqrt(Math.max(lambda, 0));

/**
 * The Fréchet distance between Gaussians fitted to two sets of embeddings (unbiased covariances).
 * tr((Σa Σb)^½) is computed as the sum of the square roots of the eigenvalues of the symmetric PSD
 * matrix Σa^½ Σb Σa^½, which has the same eigenvalues as Σa Σb.
 */
export function frechetDistance(a: readonly Float32Array[] | Embeddings, b: readonly Float32Array[] | Embeddings): number {
  const x = asEmbeddings(a);
  const y = asEmbeddings(b);
  if (x.dim !== y.dim) throw new Error(`Fréchet distance: embeddings of width ${x.dim} and ${y.dim}`);
  const dim = x.dim;
  const fa = meanAndCovariance(x);
  const fb = meanAndCovariance(y);
  let meanTerm = 0;
  let traces = 0;
  for (let j = 0; j < dim; j++) {
    meanTerm += (fa.mean[j] - fb.mean[j]) ** 2;
    traces += fa.covariance[j * dim + j] + fb.covariance[j * dim + j];
  }
  const rootA = spectralMap(fa.covariance, dim, clampedSqrt);
  const m = matmul(matmul(rootA, fb.covariance, dim), rootA, dim);
  // Symmetrise away the rounding of the two products before the symmetric solver sees it.
  for (let i = 0; i < dim; i++) for (let j = i + 1; j < dim; j++) m[i * dim + j] = m[j * dim + i] = (m[i * dim + j] + m[j * dim + i]) / 2;
  let crossTrace = 0;
  for (const lambda of symmetricEigen(m, dim).values) crossTrace += clampedSqrt(lambda);
  return meanTerm + traces - 2 * crossTrace;
}

/**
 * Image→caption retrieval accuracy for each k in `ks`: the fraction of images i whose own caption
 * `captions[i]` is among the k captions most similar (dot product; unit-length embeddings make it
 * the cosine) to image i. Row j of `captionEmbeds` embeds `captions[j]`. Captions repeat (two
 * images of one emoji): a hit is any row with the same string, and the ranking counts distinct
 * strings, so top-k always spans k different captions.
 */
export function retrievalTopK(imageEmbeds: Embeddings, captionEmbeds: Embeddings, captions: readonly string[], ks: readonly number[]): number[] {
  const { n, dim } = imageEmbeds;
  if (captionEmbeds.n !== n || captions.length !== n || captionEmbeds.dim !== dim) {
    throw new Error(`retrieval: ${n} images of width ${dim}, ${captionEmbeds.n} caption embeddings of width ${captionEmbeds.dim}, ${captions.length} captions`);
  }
  const hits = ks.map(() => 0);
  const similarity = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += imageEmbeds.data[i * dim + d] * captionEmbeds.data[j * dim + d];
      similarity[j] = s;
    }
    // Rank of the image's own caption among distinct captions: 1 + the number of other strings
    // that some row scores above every row of its own caption (ties go to the own caption).
    let best = -Infinity;
    for (let j = 0; j < n; j++) if (captions[j] === captions[i]) best = Math.max(best, similarity[j]);
    const above = new Set<string>();
    for (let j = 0; j < n; j++) if (captions[j] !== captions[i] && similarity[j] > best) above.add(captions[j]);
    ks.forEach((k, m) => {
      if (above.size < k) hits[m]++;
    });
  }
  return hits.map((h) => h / n);
}
