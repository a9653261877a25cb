// Matrix products and 2-D convolutions, with their VJPs.

import { type Dim, broadcastShapes, convOutDim, dimAdd, dimEquals, dimMul, shapeToString } from '../dims.ts';
import type { Emitter } from '../emit.ts';
import { type OpSpec, type Tensor, makeOp } from '../tensor.ts';
import { add } from './elementwise.ts';
import { emitQuantizedConv, emitQuantizedLinear } from './quantized.ts';
import { sum, sumTo } from './reduce.ts';
import { concat, reshape, slice, transpose, transposeLast } from './shape.ts';

const MATMUL: OpSpec = {
  type: 'MatMul',
  emit: (e, n) => (e.quantizesWeights ? emitQuantizedLinear(e, n) : undefined) ?? e.node('MatMul', [e.value(n.inputs[0]), e.value(n.inputs[1])]),
  vjp: (g, n) => {
    const [a, b] = n.inputs;
    return [sumTo(matmul(g, transposeLast(b)), a.shape), rightGrad(a, g, b)];
  },
};

/**
 * dL/db of a·b. For a [..., M, K] with batch axes against a matrix b [K, N] (a linear layer's
 * weight) the batch is folded into the contraction: one [K, ··M]×[··M, N] product. A batched
 * product summed over the batch wrote the gradient once per item: on the default model's UNet at
 * batch 32 those sums were a fifth of the training step's kernel time.
 */
function rightGrad(a: Tensor, g: Tensor, b: Tensor): Tensor {
  if (b.rank === 2 && a.rank > 2) return matmul(transposeLast(reshape(a, [-1, a.shape[a.rank - 1]])), reshape(g, [-1, g.shape[g.rank - 1]]));
  return sumTo(matmul(transposeLast(a), g), b.shape);
}

/** Batched matrix product [..., M, K] × [..., K, N] → [..., M, N]; batch axes broadcast. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.rank < 2 || b.rank < 2) throw new Error(`matmul needs rank ≥ 2 operands, got ${a} and ${b}`);
  const k1 = a.shape[a.rank - 1];
  const k2 = b.shape[b.rank - 2];
  if (!dimEquals(k1, k2)) throw new Error(`matmul: inner sizes differ, ${shapeToString(a.shape)} × ${shapeToString(b.shape)}`);
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'matmul');
  return makeOp(MATMUL, [a, b], [...batch, a.shape[a.rank - 2], b.shape[b.rank - 1]], a.dtype);
}

const GEMM: OpSpec = {
  type: 'Gemm',
  emit: (e, n) => e.node('Gemm', n.inputs.map((i) => e.value(i)), { transB: n.attrs.transB }),
  vjp: (g, n) => {
    const [a, b, c] = n.inputs;
    const transB = n.attrs.transB === 1;
    const bMat = transB ? b : transposeLast(b); // bMat is [N, K]
    const ga = matmul(g, bMat);
    const gbT = matmul(transposeLast(g), a); // [N, K]
    return [ga, transB ? gbT : transposeLast(gbT), c ? sumTo(g, c.shape) : undefined];
  },
};

/** a·b (+ c) for 2-D a [M, K]; b is [K, N], or [N, K] with `transB` (PyTorch Linear's layout). */
export function gemm(a: Tensor, b: Tensor, c?: Tensor, transB = false): Tensor {
  if (a.rank !== 2 || b.rank !== 2) throw new Error(`gemm needs 2-D operands, got ${a} and ${b}`);
  const [k, n] = transB ? [b.shape[1], b.shape[0]] : b.shape;
  if (!dimEquals(a.shape[1], k)) throw new Error(`gemm: inner sizes differ, ${a} × ${b}${transB ? 'ᵀ' : ''}`);
  return makeOp(GEMM, c ? [a, b, c] : [a, b], [a.shape[0], n], a.dtype, { transB: transB ? 1 : 0 });
}

export interface ConvOptions {
  stride?: number | [number, number];
  /** Same on all sides, [vertical, horizontal], or ONNX order [top, left, bottom, right]. */
  padding?: number | [number, number] | [number, number, number, number];
  dilation?: number | [number, number];
  groups?: number;
}

export interface ConvAttrs {
  strides: [number, number];
  pads: [number, number, number, number];
  dilations: [number, number];
  group: number;
}

function pair(v: number | [number, number] | undefined, fallback: number): [number, number] {
  return v === undefined ? [fallback, fallback] : typeof v === 'number' ? [v, v] : v;
}

function convAttrs(o: ConvOptions): ConvAttrs {
  const p = o.padding ?? 0;
  const pads: [number, number, number, number] = typeof p === 'number' ? [p, p, p, p] : p.length === 2 ? [p[0], p[1], p[0], p[1]] : p;
  return { strides: pair(o.stride, 1), pads, dilations: pair(o.dilation, 1), group: o.groups ?? 1 };
}

const CONV: OpSpec = {
  type: 'Conv',
  emit: (e, n, out) => {
    const quantized = e.quantizesWeights ? emitQuantizedConv(e, n, out) : undefined;
    if (quantized) return quantized;
    e.noteConvWeight(n.inputs[1]);
    return e.node('Conv', n.inputs.map((i) => e.value(i)), n.attrs);
  },
  vjp: (g, n) => {
    const [x, w, bias] = n.inputs;
    const a = n.attrs as unknown as ConvAttrs;
    const kernel = [w.shape[2] as number, w.shape[3] as number];
    const outputPadding = [0, 1].map((i) => remainder(x.shape[2 + i], a.pads[i] + a.pads[i + 2] - a.dilations[i] * (kernel[i] - 1) - 1, a.strides[i]));
    return [
      convInputGrad(x, g, w, a, kernel, outputPadding),
      convWeightGrad(x, g, a, kernel),
      bias ? sum(g, [0, 2, 3]) : undefined,
    ];
  },
};

/** (size + k) mod stride, where a symbolic size's coefficient part is divisible by the stride. */
function remainder(size: Dim, k: number, stride: number): number {
  const base = typeof size === 'number' ? size + k : size.offset + k;
  return ((base % stride) + stride) % stride;
}

/** 2-D convolution of NCHW `x` with weight [Cout, Cin/groups, kh, kw] and optional bias [Cout]. */
export function conv2d(x: Tensor, w: Tensor, bias?: Tensor, options: ConvOptions = {}): Tensor {
  const a = convAttrs(options);
  if (x.rank !== 4 || w.rank !== 4) throw new Error(`conv2d needs NCHW input and a 4-D weight, got ${x} and ${w}`);
  // dimMul, not `*`: the weight-gradient convolution has the (possibly symbolic) batch as its channels.
  const expected = dimMul(w.shape[1], a.group);
  if (!dimEquals(x.shape[1], expected)) {
    throw new Error(`conv2d: input has ${x.shape[1]} channels, weight ${shapeToString(w.shape)} with ${a.group} groups expects ${expected}`);
  }
  const [kh, kw] = [w.shape[2] as number, w.shape[3] as number];
  const shape = [
    x.shape[0],
    w.shape[0],
    convOutDim(x.shape[2], kh, a.strides[0], a.pads[0] + a.pads[2], a.dilations[0]),
    convOutDim(x.shape[3], kw, a.strides[1], a.pads[1] + a.pads[3], a.dilations[1]),
  ];
  return makeOp(CONV, bias ? [x, w, bias] : [x, w], shape, x.dtype, { ...a });
}

const CONV_TRANSPOSE: OpSpec = {
  type: 'ConvTranspose',
  emit: (e, n) => e.node('ConvTranspose', n.inputs.map((i) => e.value(i)), n.attrs),
  vjp: (g, n) => {
    const [x, w, bias] = n.inputs;
    const { output_padding: _, ...a } = n.attrs as unknown as ConvAttrs & { output_padding: number[] };
    const kernel = [w.shape[2] as number, w.shape[3] as number];
    const opts: ConvOptions = { stride: a.strides, padding: a.pads, dilation: a.dilations, groups: a.group };
    return [conv2d(g, w, undefined, opts), convWeightGrad(g, x, a, kernel), bias ? sum(g, [0, 2, 3]) : undefined];
  },
};

function convTranspose2dRaw(x: Tensor, w: Tensor, bias: Tensor | undefined, a: ConvAttrs & { output_padding: number[] }): Tensor {
  const [kh, kw] = [w.shape[2] as number, w.shape[3] as number];
  const out = (size: Dim, i: number, k: number): Dim => {
    // s·(size − 1) + output_padding + d·(k − 1) + 1 − pads
    const span = a.dilations[i] * (k - 1) + 1;
    return dimAdd(dimMul(size, a.strides[i]), -a.strides[i] + a.output_padding[i] + span - a.pads[i] - a.pads[i + 2]);
  };
  const shape = [x.shape[0], (w.shape[1] as number) * a.group, out(x.shape[2], 0, kh), out(x.shape[3], 1, kw)];
  return makeOp(CONV_TRANSPOSE, bias ? [x, w, bias] : [x, w], shape, x.dtype, { ...a });
}

/** Transposed 2-D convolution; weight [Cin, Cout/groups, kh, kw]. */
export function convTranspose2d(x: Tensor, w: Tensor, bias?: Tensor, options: ConvOptions & { outputPadding?: [number, number] } = {}): Tensor {
  if (x.rank !== 4 || w.rank !== 4) throw new Error(`convTranspose2d needs NCHW input and a 4-D weight, got ${x} and ${w}`);
  if (!dimEquals(x.shape[1], w.shape[0])) throw new Error(`convTranspose2d: input has ${x.shape[1]} channels, weight ${shapeToString(w.shape)} expects ${w.shape[0]}`);
  return convTranspose2dRaw(x, w, bias, { ...convAttrs(options), output_padding: options.outputPadding ?? [0, 0] });
}

interface InputGradAttrs {
  a: ConvAttrs;
  kernel: number[];
  outputPadding: number[];
}

/** The input gradient as a transposed convolution: the form every case has. */
function inputGradByConvTranspose(g: Tensor, w: Tensor, { a, outputPadding }: InputGradAttrs): Tensor {
  return convTranspose2dRaw(g, w, undefined, { ...a, output_padding: outputPadding });
}

/**
 * dL/dx of conv2d(x, W), its form chosen when emitted (KernelForms.convInputGrad): a transposed
 * convolution, or — for stride 1 without groups — a plain convolution of g with W flipped in space
 * and its channel axes swapped, padded by d·(k − 1) − p on each side.
 */
const CONV_INPUT_GRAD: OpSpec = {
  type: 'ConvInputGrad',
  emit: (e, n) => {
    const [g, w] = n.inputs;
    const attrs = n.attrs as unknown as InputGradAttrs;
    const { a, kernel } = attrs;
    const reach = [0, 1].map((i) => a.dilations[i] * (kernel[i] - 1));
    const pads = [reach[0] - a.pads[0], reach[1] - a.pads[1], reach[0] - a.pads[2], reach[1] - a.pads[3]] as [number, number, number, number];
    if (e.kernels.convInputGrad === 'conv' && a.group === 1 && a.strides.every((st) => st === 1) && pads.every((p) => p >= 0)) {
      return e.value(conv2d(g, flipKernel(transpose(w, [1, 0, 2, 3])), undefined, { padding: pads, dilation: a.dilations }));
    }
    return e.value(inputGradByConvTranspose(g, w, attrs));
  },
  // Both forms compute the same function; differentiate the transposed convolution's.
  vjp: (gg, n) => {
    const t = inputGradByConvTranspose(n.inputs[0], n.inputs[1], n.attrs as unknown as InputGradAttrs);
    if (t.origin.kind !== 'op') throw new Error('ConvInputGrad: expected an op');
    return CONV_TRANSPOSE.vjp!(gg, t.origin.node, t);
  },
};

function convInputGrad(x: Tensor, g: Tensor, w: Tensor, a: ConvAttrs, kernel: number[], outputPadding: number[]): Tensor {
  return makeOp(CONV_INPUT_GRAD, [g, w], x.shape, g.dtype, { a: a as never, kernel: kernel as never, outputPadding: outputPadding as never });
}

const FLIP_KERNEL: OpSpec = {
  type: 'FlipKernel',
  // Reversing both spatial axes reverses the flattened taps: a product with the anti-diagonal
  // K × K matrix, where ORT's Slice with negative steps copied one float at a time (1.5 ms for a
  // 256 → 256 kernel, each training step).
  emit: (e, n) => {
    const w = n.inputs[0];
    const int64 = (values: number[]) => e.initializer(BigInt64Array.from(values, BigInt), [values.length], 'int64');
    const [kh, kw] = [w.shape[2] as number, w.shape[3] as number];
    const taps = kh * kw;
    const reverse = new Float32Array(taps * taps);
    for (let k = 0; k < taps; k++) reverse[k * taps + (taps - 1 - k)] = 1;
    const rows = e.node('Reshape', [e.value(w), int64([-1, taps])]);
    const flipped = e.node('MatMul', [rows, e.initializer(reverse, [taps, taps], 'float32', 'reverse')]);
    return e.node('Reshape', [flipped, e.shape(w.shape)]);
  },
  vjp: (g) => [flipKernel(g)],
};

/** Reverses a kernel's two spatial axes. */
function flipKernel(w: Tensor): Tensor {
  return makeOp(FLIP_KERNEL, [w], w.shape, w.dtype);
}

const CONV_WEIGHT_GRAD: OpSpec = {
  type: 'ConvWeightGrad',
  emit: (e, n) => {
    const [x, g] = n.inputs;
    const { a, kernel } = n.attrs as unknown as { a: ConvAttrs; kernel: [number, number] };
    const form = e.kernels.convWeightGrad;
    if (form === 'gather' && isStatic(x) && isStatic(g)) return emitGatherWeightGrad(e, x, g, a, kernel);
    return form !== 'conv' || !isStaticSpatial(x, g) ? emitIm2colWeightGrad(e, x, g, a, kernel) : e.value(weightGradByConv(x, g, a, kernel));
  },
};

function isStatic(t: Tensor): boolean {
  return t.shape.every((d) => typeof d === 'number');
}

/**
 * dL/dW of conv2d(x, W) at static sizes, its patches gathered in one op: x as rows of channels
 * [N·H·W, Cin] (plus a zero row that padding reads), one Gather by a constant index [taps, N·oh·ow]
 * into [taps, N·oh·ow, Cin], then one MatMul of g as [Cout, N·oh·ow] against each tap's rows,
 * [taps, Cout, Cin], turned to [Cout, Cin, taps]. The im2col form builds the same patches with a
 * Pad, a Slice per tap and a Concat.
 */
function emitGatherWeightGrad(e: Emitter, x: Tensor, g: Tensor, a: ConvAttrs, kernel: [number, number]): string {
  const [n, cin, h, w] = x.shape as number[];
  const [, cout, oh, ow] = g.shape as number[];
  const [kh, kw] = kernel;
  const int64 = (values: number[]) => e.initializer(BigInt64Array.from(values, BigInt), [values.length], 'int64');
  const rows = e.node('Reshape', [e.node('Transpose', [e.value(x)], { perm: [0, 2, 3, 1] }), int64([n * h * w, cin])]);
  const withZero = e.node('Concat', [rows, e.initializer(new Float32Array(cin), [1, cin], 'float32', 'zero_row')], { axis: 0 });
  const patches = e.node('Gather', [withZero, patchRows(e, [n, h, w], [oh, ow], a, kernel)], { axis: 0 }); // [K, N·P, Cin]
  const gRows = e.node('Reshape', [e.node('Transpose', [e.value(g)], { perm: [1, 0, 2, 3] }), int64([cout, n * oh * ow])]);
  const perTap = e.node('Reshape', [e.node('MatMul', [gRows, patches]), int64([kh * kw, cout * cin])]); // [K, Cout·Cin]
  // To [Cout·Cin, K] as a product with the K × K identity (transA): ORT's Transpose moving the tap
  // axis innermost copied one float at a time, 2.1 ms for a 256 → 256 kernel's gradient.
  const identity = new Float32Array(kh * kw * kh * kw);
  for (let k = 0; k < kh * kw; k++) identity[k * kh * kw + k] = 1;
  const transposed = e.node('Gemm', [perTap, e.initializer(identity, [kh * kw, kh * kw], 'float32', 'identity')], { transA: 1 });
  return e.node('Reshape', [transposed, int64([cout, cin, kh, kw])]);
}

function isStaticSpatial(x: Tensor, g: Tensor): boolean {
  return [x.shape[2], x.shape[3], g.shape[2], g.shape[3]].every((d) => typeof d === 'number');
}

/**
 * dL/dW of conv2d(x, W) given the output gradient g (groups of 1). Per kernel tap (i, j), a strided
 * slice of the padded input lines up with the output grid; the taps stacked are the im2col matrix,
 * laid out [Cin·kh·kw, N·oh·ow] (the input's batch axis moved behind its channels first), so that
 * dW = g·Pᵀ is one Gemm that sums over the batch and the positions at once. (A batched MatMul per
 * item, [N, Cin·K, Cout], then a ReduceSum over N wrote and read N times the gradient: on the
 * default model's UNet at batch 32 those ReduceSums were 27% of the training step's kernel time.)
 * Slice ends come from g's run-time shape, so this works at symbolic sizes too.
 */
function emitIm2colWeightGrad(e: Emitter, x: Tensor, g: Tensor, a: ConvAttrs, kernel: [number, number]): string {
  const [kh, kw] = kernel;
  const [sh, sw] = a.strides;
  const [dh, dw] = a.dilations;
  const [pt, pl, pb, pr] = a.pads;
  const int64 = (values: number[]) => e.initializer(BigInt64Array.from(values, BigInt), [values.length], 'int64');
  let padded = e.node('Transpose', [e.value(x)], { perm: [1, 0, 2, 3] }); // [Cin, N, H, W]
  if (pt || pl || pb || pr) padded = e.node('Pad', [padded, int64([0, 0, pt, pl, 0, 0, pb, pr])], { mode: 'constant' });
  const gName = e.value(g);
  const outSize = e.node('Shape', [gName], { start: 2, end: 4 });
  const span = e.node('Mul', [outSize, int64([sh, sw])]);
  const axes = int64([2, 3]);
  const steps = int64([sh, sw]);
  const taps: string[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const starts = [i * dh, j * dw];
      const ends = e.node('Add', [span, int64([starts[0] - sh + 1, starts[1] - sw + 1])]);
      const tap = e.node('Slice', [padded, int64(starts), ends, axes, steps]);
      taps.push(e.node('Unsqueeze', [tap, int64([1])]));
    }
  }
  const cin = x.shape[1] as number;
  const cout = g.shape[1] as number;
  const stacked = taps.length === 1 ? taps[0] : e.node('Concat', taps, { axis: 1 }); // [Cin, K, N, oh, ow]
  const patches = e.node('Reshape', [stacked, int64([cin * kh * kw, -1])]); // [Cin·K, N·P]
  const gRows = e.node('Reshape', [e.node('Transpose', [gName], { perm: [1, 0, 2, 3] }), int64([cout, -1])]); // [Cout, N·P]
  return e.node('Reshape', [e.node('Gemm', [gRows, patches], { transB: 1 }), int64([cout, cin, kh, kw])]);
}

/** Each emitter's patch-row indices by geometry: convolutions of one shape share one initializer. */
const patchIndices = new WeakMap<Emitter, Map<string, string>>();

/**
 * The constant index of the gather form: for each tap (i, j) and output position (b, oy, ox), the
 * row of x (as [N·H·W, Cin]) it reads, or row N·H·W (the zero row) where it falls in the padding.
 */
function patchRows(e: Emitter, [n, h, w]: number[], [oh, ow]: number[], a: ConvAttrs, [kh, kw]: [number, number]): string {
  let known = patchIndices.get(e);
  if (!known) patchIndices.set(e, (known = new Map()));
  const key = JSON.stringify([n, h, w, oh, ow, kh, kw, a.strides, a.dilations, a.pads]);
  const cached = known.get(key);
  if (cached) return cached;
  const zeroRow = n * h * w;
  const index = new Int32Array(kh * kw * n * oh * ow);
  let at = 0;
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      for (let b = 0; b < n; b++) {
        for (let oy = 0; oy < oh; oy++) {
          const y = oy * a.strides[0] + i * a.dilations[0] - a.pads[0];
          for (let ox = 0; ox < ow; ox++) {
            const xx = ox * a.strides[1] + j * a.dilations[1] - a.pads[1];
            index[at++] = y >= 0 && y < h && xx >= 0 && xx < w ? (b * h + y) * w + xx : zeroRow;
          }
        }
      }
    }
  }
  const name = e.initializer(index, [kh * kw, n * oh * ow], 'int32', 'patch_rows');
  known.set(key, name);
  return name;
}

/** The same gradient as one convolution of x with g as the kernel (batch and channel axes swapped). */
function weightGradByConv(x: Tensor, g: Tensor, a: ConvAttrs, kernel: [number, number]): Tensor {
  const xT = transpose(x, [1, 0, 2, 3]);
  const gT = transpose(g, [1, 0, 2, 3]);
  let wT = conv2d(xT, gT, undefined, { stride: a.dilations, dilation: a.strides, padding: a.pads });
  // The correlation can reach past the kernel when strides leave a remainder: keep the kernel's extent.
  if (wT.shape[2] !== kernel[0]) wT = slice(wT, 2, 0, kernel[0]);
  if (wT.shape[3] !== kernel[1]) wT = slice(wT, 3, 0, kernel[1]);
  return transpose(wT, [1, 0, 2, 3]);
}

/** dL/dW of conv2d(x, W) given the output gradient g; grouped convolutions work per group. */
export function convWeightGrad(x: Tensor, g: Tensor, a: ConvAttrs, kernel: number[]): Tensor {
  if (a.group > 1) {
    const cin = (x.shape[1] as number) / a.group;
    const cout = (g.shape[1] as number) / a.group;
    const parts = Array.from({ length: a.group }, (_, i) =>
      convWeightGrad(slice(x, 1, i * cin, (i + 1) * cin), slice(g, 1, i * cout, (i + 1) * cout), { ...a, group: 1 }, kernel),
    );
    return concat(parts, 0);
  }
  return makeOp(CONV_WEIGHT_GRAD, [x, g], [g.shape[1], x.shape[1], kernel[0], kernel[1]], x.dtype, { a: a as never, kernel: kernel as never });
}

/** y = x·Wᵀ + b over the last axis, with PyTorch's Linear weight layout [out, in]. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  const y = matmul(x, transposeLast(weight));
  return bias ? add(y, bias) : y;
}
