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
  const scales = rowScales(w, rows, levels, 'quantizeRows');
  const n = w.length / rows;
  const values = new Int8Array(w.length);
  for (let r = 0; r < rows; r++) {
    const scale = scales[r];
    for (let i = r * n; i < (r + 1) * n; i++) values[i] = roundHalfUp(w[i] / scale);
  }
  return { values, scales: Float32Array.from(scales) };
}

/**
 * Each row's scale, max |w| ÷ levels (1 for an all-zero row), in double precision: values are
 * divided by it before it is stored as float32.
 */
function rowScales(w: Float32Array, rows: number, levels: number, caller: string): Float64Array {
  if (!Number.isInteger(rows) || rows <= 0 || w.length % rows) throw new Error(`${caller}: ${w.length} values do not split into ${rows} rows`);
  if (!Number.isInteger(levels) || levels < 1 || levels > 127) throw new Error(`${caller}: levels must be 1–127, got ${levels}`);
  const n = w.length / rows;
  const scales = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let max = 0;
    let finite = true;
    for (let i = r * n; i < (r + 1) * n; i++) {
      const a = Math.abs(w[i]);
      max = a > max ? a : max;
      finite &&= a <= Number.MAX_VALUE; // NaN and ±Infinity fail it (NaN never wins the comparison above)
    }
    if (!finite) throw new Error(`${caller}: row ${r} holds a non-finite weight`);
    scales[r] = max > 0 ? max / levels : 1;
  }
  return scales;
}

/** Math.round (half up) for the |x| ≤ 127 met here, without its branches, which mispredict on weights of random sign. */
function roundHalfUp(x: number): number {
  return Math.floor(x + 0.5);
}

/**
 * The int8 right-hand operand [K, Cout] and per-channel scales of a linear [Cout, K] or convolution
 * [Cout, Cin, kh, kw] weight (`cin`: Cin, or K for a linear): `quantizeRows` of the weight, its
 * rows reordered to NHWC patch order [kh, kw, Cin] and transposed, so that K = kh·kw·Cin indexes the
 * patches of uint8 activations. The first run of a q8 model quantises every weight of its UNet (860M
 * values for SD-1.5) before its first step, so each value is quantised where its byte is written,
 * 64 rows at a time, with no row-order copy in between (the README's first-run section has the
 * time of the whole int8 file, from bench/sd-session-options.ts). `into`: where to write the values
 * (its first w.length bytes), instead of a new array.
 */
export function quantizeTransposed(w: Float32Array, rows: number, cin: number, levels = 127, into?: Int8Array): QuantizedRows {
  const scales = rowScales(w, rows, levels, 'quantizeTransposed');
  const n = w.length / rows;
  // A convolution's row is [Cin, taps] in the checkpoint and [taps, Cin] in patch order; a linear's
  // row is all channels (cin = n, one tap).
  if (!Number.isInteger(cin) || cin <= 0 || n % cin) throw new Error(`quantizeTransposed: rows of ${n} values do not split into ${cin} channels`);
  const taps = n / cin;
  const values = into ? into.subarray(0, w.length) : new Int8Array(w.length);
  const BLOCK = 64;
  for (let r0 = 0; r0 < rows; r0 += BLOCK) {
    const r1 = Math.min(rows, r0 + BLOCK);
    for (let c = 0; c < cin; c++) {
      for (let t = 0; t < taps; t++) {
        const from = c * taps + t;
        const to = (t * cin + c) * rows;
        for (let r = r0; r < r1; r++) values[to + r] = roundHalfUp(w[r * n + from] / scales[r]);
      }
    }
  }
  return { values, scales: Float32Array.from(scales) };
}
