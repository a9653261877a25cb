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
import { reserve, wasmKernels } from './wasm.ts';

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
  /** floor(w · multiplier[row] + 0.5), in [−levels, levels]. */
  values: Int8Array;
  /** One scale per row: max |w| of the row ÷ levels (1 for an all-zero row). */
  scales: Float32Array;
}

/**
 * Symmetric per-row int8 quantisation of a row-major [rows, n] matrix (rows: output channels), in
 * float32 arithmetic: scale = max |w| ÷ levels, multiplier = levels ÷ max |w| (both 1 for an
 * all-zero row), value = floor(w · multiplier + 0.5). Plain JavaScript, the definition that the
 * WebAssembly kernels of `quantizeTransposed` are tested against (Math.fround of one double
 * operation on float32 operands is the float32 operation's result).
 */
export function quantizeRows(w: Float32Array, rows: number, levels = 127): QuantizedRows {
  checkRows(w.length, rows, levels, 'quantizeRows');
  const n = w.length / rows;
  const values = new Int8Array(w.length);
  const scales = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let max = 0;
    for (let i = r * n; i < (r + 1) * n; i++) max = Math.max(max, Math.abs(w[i])); // keeps a NaN
    if (!(max <= MAX_FLOAT32)) throw new Error(`quantizeRows: row ${r} holds a non-finite weight`);
    scales[r] = max > 0 ? max / levels : 1;
    const multiplier = max > 0 ? Math.fround(levels / max) : 1;
    for (let i = r * n; i < (r + 1) * n; i++) values[i] = Math.floor(Math.fround(Math.fround(w[i] * multiplier) + 0.5));
  }
  return { values, scales };
}

const MAX_FLOAT32 = 3.4028234663852886e38;

function checkRows(length: number, rows: number, levels: number, caller: string): void {
  if (!Number.isInteger(rows) || rows <= 0 || length % rows) throw new Error(`${caller}: ${length} values do not split into ${rows} rows`);
  if (!Number.isInteger(levels) || levels < 1 || levels > 127) throw new Error(`${caller}: levels must be 1–127, got ${levels}`);
}

/**
 * The int8 right-hand operand [K, Cout] and per-channel scales of a linear [Cout, K] or convolution
 * [Cout, Cin, kh, kw] weight (`cin`: Cin, or K for a linear): `quantizeRows` of the weight, its
 * rows reordered to NHWC patch order [kh, kw, Cin] and transposed, so that K = kh·kw·Cin indexes the
 * patches of uint8 activations. `into`: where to write the values (its first w.length bytes),
 * instead of a new array.
 */
export function quantizeTransposed(w: Float32Array, rows: number, cin: number, levels = 127, into?: Int8Array): QuantizedRows {
  checkRows(w.length, rows, levels, 'quantizeTransposed');
  const n = w.length / rows;
  const quantizer = new TransposedQuantizer(rows, cin, n, levels);
  for (let r0 = 0; r0 < rows; r0 += TRANSPOSE_BLOCK_ROWS) {
    const count = Math.min(TRANSPOSE_BLOCK_ROWS, rows - r0);
    quantizer.floats(count).set(w.subarray(r0 * n, (r0 + count) * n));
    quantizer.quantize(r0, count);
  }
  const values = into ? into.subarray(0, w.length) : new Int8Array(w.length);
  values.set(quantizer.values());
  return { values, scales: quantizer.scales().slice() };
}

/**
 * Rows per block of a `TransposedQuantizer`: a block's floats (64 rows of at most 11,520 values for
 * SD's 3×3 convolutions, ~3 MB) stay in cache between being read, scaled and rounded.
 */
export const TRANSPOSE_BLOCK_ROWS = 64;

interface Kernels {
  rowScales(src: number, count: number, n: number, levels: number, scales: number, multipliers: number): number;
  quantizeRows(src: number, count: number, n: number, multipliers: number, dst: number): void;
  transposeRows(src: number, count: number, cin: number, taps: number, dst: number, rows: number, r0: number, scratch: number): void;
  widenHalves(src: number, count: number, dst: number): void;
  widenBfloat16(src: number, count: number, dst: number): void;
}

/**
 * `quantizeTransposed` of one weight, a block of rows at a time, in WebAssembly SIMD (quantize.wat):
 * put a block's floats in `floats(count)`, then `quantize(r0, count)`; when every row is done,
 * `values()` is the [K, rows] operand and `scales()` the scales. The first run of a q8 model
 * quantises every weight of its UNet (860M values for SD-1.5) before its first step, and the int8
 * file writer (quantize-file.ts) reads each weight's blocks straight into `floats`. The kernels'
 * memory is the thread's: one weight at a time, and a new quantizer invalidates the arrays an older
 * one returned.
 */
export class TransposedQuantizer {
  private readonly k = wasmKernels<Kernels>('quantize');
  private readonly taps: number;
  private readonly at: { floats: number; halves: number; bytes: number; values: number; scales: number; multipliers: number; scratch: number };

  constructor(
    readonly rows: number,
    readonly cin: number,
    readonly n: number,
    readonly levels: number,
  ) {
    checkRows(rows * n, rows, levels, 'quantizeTransposed');
    // A convolution's row is [Cin, taps] in the checkpoint and [taps, Cin] in patch order; a linear's
    // row is all channels (cin = n, one tap).
    if (!Number.isInteger(cin) || cin <= 0 || n % cin) throw new Error(`quantizeTransposed: rows of ${n} values do not split into ${cin} channels`);
    this.taps = n / cin;
    const block = Math.min(rows, TRANSPOSE_BLOCK_ROWS) * n;
    const align = (bytes: number) => Math.ceil(bytes / 16) * 16;
    const floats = 0;
    const halves = floats + align(4 * block);
    const bytes = halves + align(2 * block);
    const values = bytes + align(block);
    const scales = values + align(rows * n);
    const multipliers = scales + align(4 * rows);
    const scratch = multipliers + 4 * TRANSPOSE_BLOCK_ROWS; // one 16 × 16 byte tile
    this.at = { floats, halves, bytes, values, scales, multipliers, scratch };
    reserve(this.k.memory, scratch + 256);
  }

  /** Where the next block's floats go: `count` rows. */
  floats(count: number): Float32Array {
    return new Float32Array(this.k.memory.buffer, this.at.floats, count * this.n);
  }

  /** Where the next block goes as 16-bit floats (F16 or BF16 bytes, `count` rows), for `widen`. */
  halves(count: number): Uint8Array {
    return new Uint8Array(this.k.memory.buffer, this.at.halves, 2 * count * this.n);
  }

  /** Widens the block in `halves(count)` into `floats(count)`. */
  widen(dtype: 'F16' | 'BF16', count: number): void {
    (dtype === 'F16' ? this.k.widenHalves : this.k.widenBfloat16)(this.at.halves, count * this.n, this.at.floats);
  }

  /** Quantises the block in `floats(count)` as rows r0 … r0 + count − 1 of the weight. */
  quantize(r0: number, count: number): void {
    if (!(count > 0 && count <= TRANSPOSE_BLOCK_ROWS && r0 >= 0 && r0 + count <= this.rows)) throw new Error(`quantizeTransposed: rows ${r0}–${r0 + count - 1} are not a block of a ${this.rows}-row weight`);
    const { k, at } = this;
    const bad = k.rowScales(at.floats, count, this.n, this.levels, at.scales + 4 * r0, at.multipliers);
    if (bad) throw new Error(`quantizeTransposed: row ${r0 + bad - 1} holds a non-finite weight`);
    k.quantizeRows(at.floats, count, this.n, at.multipliers, at.bytes);
    k.transposeRows(at.bytes, count, this.cin, this.taps, at.values, this.rows, r0, at.scratch);
  }

  values(): Int8Array {
    return new Int8Array(this.k.memory.buffer, this.at.values, this.rows * this.n);
  }

  scales(): Float32Array {
    return new Float32Array(this.k.memory.buffer, this.at.scales, this.rows);
  }
}
