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
import { arch, endianness } from 'node:os';

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
  const { scales, multipliers } = rowScales(w, rows, levels, 'quantizeRows');
  const n = w.length / rows;
  const values = new Int8Array(w.length);
  for (let r = 0; r < rows; r++) {
    const m = multipliers[r];
    for (let i = r * n; i < (r + 1) * n; i++) values[i] = roundHalfUp(w[i] * m);
  }
  return { values, scales };
}

/**
 * Each row's scale, max |w| ÷ levels (1 for an all-zero row), and the multiplier levels ÷ max |w|
 * (double precision) that quantises its values. Four running maxima, so that the comparisons do not
 * wait on each other; Math.max keeps a NaN, and an infinity is the maximum, so one test of the
 * result finds any non-finite weight.
 */
function rowScales(w: Float32Array, rows: number, levels: number, caller: string): { scales: Float32Array; multipliers: Float64Array } {
  if (!Number.isInteger(rows) || rows <= 0 || w.length % rows) throw new Error(`${caller}: ${w.length} values do not split into ${rows} rows`);
  if (!Number.isInteger(levels) || levels < 1 || levels > 127) throw new Error(`${caller}: levels must be 1–127, got ${levels}`);
  const n = w.length / rows;
  const scales = new Float32Array(rows);
  const multipliers = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const end = (r + 1) * n;
    let m0 = 0;
    let m1 = 0;
    let m2 = 0;
    let m3 = 0;
    let i = r * n;
    for (; i + 3 < end; i += 4) {
      m0 = Math.max(m0, Math.abs(w[i]));
      m1 = Math.max(m1, Math.abs(w[i + 1]));
      m2 = Math.max(m2, Math.abs(w[i + 2]));
      m3 = Math.max(m3, Math.abs(w[i + 3]));
    }
    for (; i < end; i++) m0 = Math.max(m0, Math.abs(w[i]));
    const max = Math.max(m0, m1, m2, m3);
    if (!(max <= Number.MAX_VALUE)) throw new Error(`${caller}: row ${r} holds a non-finite weight`);
    scales[r] = max > 0 ? max / levels : 1;
    multipliers[r] = max > 0 ? levels / max : 1;
  }
  return { scales, multipliers };
}

/** Math.round (half up) for the |x| ≤ 127 met here, without its branches, which mispredict on weights of random sign. */
function roundHalfUp(x: number): number {
  return Math.floor(x + 0.5);
}

/**
 * The int8 right-hand operand [K, Cout] and per-channel scales of a linear [Cout, K] or convolution
 * [Cout, Cin, kh, kw] weight (`cin`: Cin, or K for a linear): `quantizeRows` of the weight, its
 * rows reordered to NHWC patch order [kh, kw, Cin] and transposed, so that K = kh·kw·Cin indexes the
 * patches of uint8 activations. `into`: where to write the values (its first w.length bytes),
 * instead of a new array.
 */
export function quantizeTransposed(w: Float32Array, rows: number, cin: number, levels = 127, into?: Int8Array): QuantizedRows {
  if (!Number.isInteger(rows) || rows <= 0 || w.length % rows) throw new Error(`quantizeTransposed: ${w.length} values do not split into ${rows} rows`);
  const n = w.length / rows;
  const values = into ? into.subarray(0, w.length) : new Int8Array(w.length);
  const scales = new Float32Array(rows);
  for (let r0 = 0; r0 < rows; r0 += TRANSPOSE_BLOCK_ROWS) {
    const r1 = Math.min(rows, r0 + TRANSPOSE_BLOCK_ROWS);
    quantizeTransposedBlock(w.subarray(r0 * n, r1 * n), r0, rows, cin, levels, values, scales);
  }
  return { values, scales };
}

/**
 * Rows per block of `quantizeTransposedBlock` in `quantizeTransposed` and the int8 file writer: the
 * block's floats (64 rows of at most 11,520 values for SD's 3×3 convolutions, ~3 MB) stay in cache
 * between reading them, finding their rows' scales and quantising them.
 */
export const TRANSPOSE_BLOCK_ROWS = 64;

/**
 * `quantizeTransposed` of rows [r0, r0 + block rows) of a [rows, n] weight, given alone as `block`:
 * their int8 values go to their places in `values` ([K, rows]), their scales to `scales[r0…]`. The
 * first run of a q8 model quantises every weight of its UNet (860M values for SD-1.5) before its
 * first step, so the writer reads a weight a block at a time (quantize-file.ts) and each value is
 * quantised where its transposed byte is written.
 */
export function quantizeTransposedBlock(block: Float32Array, r0: number, rows: number, cin: number, levels: number, values: Int8Array, scales: Float32Array): void {
  const n = values.length / rows;
  const count = block.length / n;
  if (!Number.isInteger(count) || r0 + count > rows) throw new Error(`quantizeTransposed: ${block.length} values from row ${r0} are not whole rows of a [${rows}, ${n}] weight`);
  const { scales: blockScales, multipliers } = rowScales(block, count, levels, 'quantizeTransposed');
  // A convolution's row is [Cin, taps] in the checkpoint and [taps, Cin] in patch order; a linear's
  // row is all channels (cin = n, one tap).
  if (!Number.isInteger(cin) || cin <= 0 || n % cin) throw new Error(`quantizeTransposed: rows of ${n} values do not split into ${cin} channels`);
  scales.set(blockScales, r0);
  const taps = n / cin;
  // Four rows' bytes go out as one 32-bit store where the output rows are 4-byte aligned (every
  // SD weight) on a little-endian machine: 25–35% faster than byte stores.
  const words = rows % 4 === 0 && r0 % 4 === 0 && values.byteOffset % 4 === 0 && endianness() === 'LE' ? new Int32Array(values.buffer, values.byteOffset, values.length / 4) : undefined;
  const w = block;
  const m = multipliers;
  for (let c = 0; c < cin; c++) {
    for (let t = 0; t < taps; t++) {
      const to = (t * cin + c) * rows + r0;
      let k = c * taps + t; // block[r][c][t] for r = 0
      if (words) {
        for (let r = 0; r < count; r += 4, k += 4 * n) {
          const q0 = roundHalfUp(w[k] * m[r]);
          const q1 = roundHalfUp(w[k + n] * m[r + 1]);
          const q2 = roundHalfUp(w[k + 2 * n] * m[r + 2]);
          const q3 = roundHalfUp(w[k + 3 * n] * m[r + 3]);
          words[(to + r) >> 2] = (q0 & 255) | ((q1 & 255) << 8) | ((q2 & 255) << 16) | (q3 << 24);
        }
      } else {
        for (let r = 0; r < count; r++, k += n) values[to + r] = roundHalfUp(w[k] * m[r]);
      }
    }
  }
}
