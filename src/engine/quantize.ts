// int8 weights (`dtype: 'q8'`): linear and convolution weights quantised symmetrically per output
// channel when a graph is emitted, from whatever float checkpoint they were loaded from. Activations
// are quantised per tensor at run time (DynamicQuantizeLinear, uint8), so each layer becomes an
// integer matrix product uint8 × int8 → int32, rescaled by x_scale · w_scale[channel].
//
// Forms measured on the development machine (AMD EPYC Zen 4, AVX-512 VNNI; bench/q8-forms.bench.ts):
// MatMulInteger with int8 weights on the right runs at ~2× the fp32 MatMul (ORT may fuse the chain
// into DynamicQuantizeMatMul; not checked); ConvInteger, int8 weights on the left, and QDQ convolutions are not
// faster than fp32 (ConvInteger with int8 weights was 5× slower), so a convolution becomes NHWC
// patches of the uint8 activations and one MatMulInteger.

import { readFileSync } from 'node:fs';
import { arch } from 'node:os';

export type WeightDType = 'fp32' | 'q8';
export const WEIGHT_DTYPES: readonly WeightDType[] = ['fp32', 'q8'];

/**
 * The largest int8 level weights use. x86 CPUs without VNNI multiply uint8 × int8 pairs with
 * vpmaddubsw, whose int16 sums saturate past 127 · 255 · 2: there, weights keep 7 bits (±63), as
 * ONNX Runtime's own quantiser does (`reduce_range`). VNNI and Arm's dot products do not saturate.
 */
export function weightLevels(): number {
  if (arch() !== 'x64') return 127;
  try {
    return /\b(avx512_vnni|avx_vnni)\b/.test(readFileSync('/proc/cpuinfo', 'utf8')) ? 127 : 63;
  } catch {
    return 63;
  }
}

export interface QuantizedRows {
  /** round(w / scale[row]), in [−levels, levels], same layout as the input. */
  values: Int8Array;
  /** One scale per row: max |w| of the row ÷ levels (1 for an all-zero row). */
  scales: Float32Array;
}

/** Symmetric per-row int8 quantisation of a row-major [rows, n] matrix (rows: output channels). */
export function quantizeRows(w: Float32Array, rows: number, levels = 127): QuantizedRows {
  if (!Number.isInteger(rows) || rows <= 0 || w.length % rows) throw new Error(`quantizeRows: ${w.length} values do not split into ${rows} rows`);
  if (!Number.isInteger(levels) || levels < 1 || levels > 127) throw new Error(`quantizeRows: levels must be 1–127, got ${levels}`);
  const n = w.length / rows;
  const values = new Int8Array(w.length);
  const scales = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let max = 0;
    for (let i = r * n; i < (r + 1) * n; i++) max = Math.max(max, Math.abs(w[i]));
    if (!Number.isFinite(max)) throw new Error(`quantizeRows: row ${r} holds a non-finite weight`);
    const scale = max > 0 ? max / levels : 1;
    scales[r] = scale;
    for (let i = r * n; i < (r + 1) * n; i++) values[i] = Math.round(w[i] / scale);
  }
  return { values, scales };
}

/**
 * [rows, n] int8 → [n, rows]: the right-hand operand of x · Wᵀ. A convolution weight
 * [Cout, Cin, kh, kw] is first reordered to [Cout, kh, kw, Cin] (`convToPatchOrder`), the order of
 * its NHWC patches.
 */
export function transposeRows(values: Int8Array, rows: number): Int8Array {
  const n = values.length / rows;
  const out = new Int8Array(values.length);
  for (let r = 0; r < rows; r++) for (let i = 0; i < n; i++) out[i * rows + r] = values[r * n + i];
  return out;
}

/** Conv weight [Cout, Cin, kh, kw] → [Cout, kh, kw, Cin] (each output channel's patch in NHWC order). */
export function convToPatchOrder(w: Float32Array, shape: readonly number[]): Float32Array {
  const [cout, cin, kh, kw] = shape;
  const out = new Float32Array(w.length);
  for (let o = 0; o < cout; o++)
    for (let c = 0; c < cin; c++)
      for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) out[((o * kh + i) * kw + j) * cin + c] = w[((o * cin + c) * kh + i) * kw + j];
  return out;
}
