// Naive plain-JS references for the engine's heavier ops: loops that follow the definitions, slow
// and obviously right, for small test sizes only.

export interface ConvRefOptions {
  stride?: [number, number];
  /** [top, left, bottom, right] */
  pads?: [number, number, number, number];
  dilation?: [number, number];
  groups?: number;
}

/** NCHW conv2d; weight [Cout, Cin/groups, kh, kw]. */
export function conv2dRef(x: Float32Array, xs: number[], w: Float32Array, ws: number[], bias: Float32Array | undefined, o: ConvRefOptions = {}): { data: Float32Array; shape: number[] } {
  const [n, c, h, wd] = xs;
  const [co, cg, kh, kw] = ws;
  const [sh, sw] = o.stride ?? [1, 1];
  const [pt, pl, pb, pr] = o.pads ?? [0, 0, 0, 0];
  const [dh, dw] = o.dilation ?? [1, 1];
  const groups = o.groups ?? 1;
  if (cg * groups !== c) throw new Error('conv2dRef: channel mismatch');
  const ho = Math.floor((h + pt + pb - dh * (kh - 1) - 1) / sh) + 1;
  const wo = Math.floor((wd + pl + pr - dw * (kw - 1) - 1) / sw) + 1;
  const perGroup = co / groups;
  const out = new Float32Array(n * co * ho * wo);
  for (let b = 0; b < n; b++)
    for (let oc = 0; oc < co; oc++) {
      const g = Math.floor(oc / perGroup);
      for (let oy = 0; oy < ho; oy++)
        for (let ox = 0; ox < wo; ox++) {
          let s = bias ? bias[oc] : 0;
          for (let ic = 0; ic < cg; ic++)
            for (let ky = 0; ky < kh; ky++)
              for (let kx = 0; kx < kw; kx++) {
                const iy = oy * sh - pt + ky * dh;
                const ix = ox * sw - pl + kx * dw;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                s += x[((b * c + g * cg + ic) * h + iy) * wd + ix] * w[((oc * cg + ic) * kh + ky) * kw + kx];
              }
          out[((b * co + oc) * ho + oy) * wo + ox] = s;
        }
    }
  return { data: out, shape: [n, co, ho, wo] };
}

/** NCHW transposed conv2d; weight [Cin, Cout/groups, kh, kw]: every input pixel scatters the kernel. */
export function convTranspose2dRef(
  x: Float32Array,
  xs: number[],
  w: Float32Array,
  ws: number[],
  bias: Float32Array | undefined,
  o: ConvRefOptions & { outputPadding?: [number, number] } = {},
): { data: Float32Array; shape: number[] } {
  const [n, ci, h, wd] = xs;
  const [, cog, kh, kw] = ws;
  const [sh, sw] = o.stride ?? [1, 1];
  const [pt, pl, pb, pr] = o.pads ?? [0, 0, 0, 0];
  const [dh, dw] = o.dilation ?? [1, 1];
  const [oph, opw] = o.outputPadding ?? [0, 0];
  const groups = o.groups ?? 1;
  const co = cog * groups;
  const cig = ci / groups;
  const ho = sh * (h - 1) + oph + dh * (kh - 1) + 1 - pt - pb;
  const wo = sw * (wd - 1) + opw + dw * (kw - 1) + 1 - pl - pr;
  const out = new Float32Array(n * co * ho * wo);
  for (let b = 0; b < n; b++)
    for (let oc = 0; oc < co; oc++) for (let i = 0; i < ho * wo; i++) out[(b * co + oc) * ho * wo + i] = bias ? bias[oc] : 0;
  for (let b = 0; b < n; b++)
    for (let ic = 0; ic < ci; ic++) {
      const g = Math.floor(ic / cig);
      for (let iy = 0; iy < h; iy++)
        for (let ix = 0; ix < wd; ix++) {
          const v = x[((b * ci + ic) * h + iy) * wd + ix];
          for (let oc = 0; oc < cog; oc++)
            for (let ky = 0; ky < kh; ky++)
              for (let kx = 0; kx < kw; kx++) {
                const oy = iy * sh - pt + ky * dh;
                const ox = ix * sw - pl + kx * dw;
                if (oy < 0 || oy >= ho || ox < 0 || ox >= wo) continue;
                out[((b * co + g * cog + oc) * ho + oy) * wo + ox] += v * w[((ic * cog + oc) * kh + ky) * kw + kx];
              }
        }
    }
  return { data: out, shape: [n, co, ho, wo] };
}

/** [M, K] × [K, N] */
export function matmulRef(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float32Array {
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let t = 0; t < k; t++) s += a[i * k + t] * b[t * n + j];
    out[i * n + j] = s;
  }
  return out;
}

/** Softmax over each contiguous row of length `n`. */
export function softmaxRows(x: ArrayLike<number>, n: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    let m = -Infinity;
    for (let i = 0; i < n; i++) m = Math.max(m, x[r * n + i]);
    let s = 0;
    for (let i = 0; i < n; i++) s += Math.exp(x[r * n + i] - m);
    for (let i = 0; i < n; i++) out[r * n + i] = Math.exp(x[r * n + i] - m) / s;
  }
  return out;
}

/** Multi-head attention on [B, L, heads·D] projections: softmax(q·kᵀ·scale)·v per head. */
export function attentionRef(q: Float32Array, k: Float32Array, v: Float32Array, b: number, lq: number, lk: number, c: number, cv: number, heads: number, scale?: number): Float32Array {
  const d = c / heads;
  const dv = cv / heads;
  const s = scale ?? 1 / Math.sqrt(d);
  const out = new Float32Array(b * lq * cv);
  for (let n = 0; n < b; n++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < lq; i++) {
        const logits = new Float32Array(lk);
        for (let j = 0; j < lk; j++) {
          let dot = 0;
          for (let t = 0; t < d; t++) dot += q[(n * lq + i) * c + h * d + t] * k[(n * lk + j) * c + h * d + t];
          logits[j] = dot * s;
        }
        const p = softmaxRows(logits, lk);
        for (let t = 0; t < dv; t++) {
          let acc = 0;
          for (let j = 0; j < lk; j++) acc += p[j] * v[(n * lk + j) * cv + h * dv + t];
          out[(n * lq + i) * cv + h * dv + t] = acc;
        }
      }
  return out;
}

/** Normalises each contiguous block of `n` values, then applies per-element `scale(i)`/`shift(i)`. */
export function normalizeBlocks(x: ArrayLike<number>, n: number, eps: number, affine: (i: number, v: number) => number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    let m = 0;
    for (let i = 0; i < n; i++) m += x[r * n + i];
    m /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (x[r * n + i] - m) ** 2;
    v /= n;
    for (let i = 0; i < n; i++) out[r * n + i] = affine(r * n + i, (x[r * n + i] - m) / Math.sqrt(v + eps));
  }
  return out;
}

/** erf in float64: the Maclaurin series below 2.5, erfc's continued fraction above. */
export function erfRef(x: number): number {
  const ax = Math.abs(x);
  let r: number;
  if (ax < 2.5) {
    let term = ax;
    let s = ax;
    for (let n = 1; n < 60; n++) {
      term *= (-ax * ax) / n;
      s += term / (2 * n + 1);
    }
    r = (2 / Math.sqrt(Math.PI)) * s;
  } else {
    let f = 0;
    for (let n = 60; n >= 1; n--) f = n / 2 / (ax + f);
    r = 1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  }
  return x < 0 ? -r : r;
}
