// Matrix products and 2-D convolutions, with their VJPs.

import { type Dim, broadcastShapes, convOutDim, dimAdd, dimEquals, dimMul, shapeToString } from '../dims.ts';
import { type OpSpec, type Tensor, makeOp } from '../tensor.ts';
import { add } from './elementwise.ts';
import { sum, sumTo } from './reduce.ts';
import { concat, slice, transpose, transposeLast } from './shape.ts';

const MATMUL: OpSpec = {
  type: 'MatMul',
  emit: (e, n) => e.node('MatMul', [e.value(n.inputs[0]), e.value(n.inputs[1])]),
  vjp: (g, n) => {
    const [a, b] = n.inputs;
    return [sumTo(matmul(g, transposeLast(b)), a.shape), sumTo(matmul(transposeLast(a), g), b.shape)];
  },
};

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
  emit: (e, n) => e.node('Conv', n.inputs.map((i) => e.value(i)), n.attrs),
  vjp: (g, n) => {
    const [x, w, bias] = n.inputs;
    const a = n.attrs as unknown as ConvAttrs;
    const kernel = [w.shape[2] as number, w.shape[3] as number];
    const outputPadding = [0, 1].map((i) => remainder(x.shape[2 + i], a.pads[i] + a.pads[i + 2] - a.dilations[i] * (kernel[i] - 1) - 1, a.strides[i]));
    return [
      convTranspose2dRaw(g, w, undefined, { ...a, output_padding: outputPadding }),
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

/** A value that cannot be computed: tracing goes on, and compiling a graph that needs it throws. */
const UNAVAILABLE: OpSpec = {
  type: 'Unavailable',
  emit: (_e, n) => {
    throw new Error(n.attrs.message as string);
  },
};

/**
 * dL/dW of conv2d(x, W) given the output gradient g, as one convolution of x with g as the kernel
 * (batch and channel axes swapped): W'[ci, co] = Σ_n x[n, ci] ⋆ g[n, co], with the roles of stride
 * and dilation exchanged. Grouped convolutions do this per group.
 */
export function convWeightGrad(x: Tensor, g: Tensor, a: ConvAttrs, kernel: number[]): Tensor {
  if (a.group > 1) {
    const cin = (x.shape[1] as number) / a.group;
    const cout = (g.shape[1] as number) / a.group;
    const parts = Array.from({ length: a.group }, (_, i) =>
      convWeightGrad(slice(x, 1, i * cin, (i + 1) * cin), slice(g, 1, i * cout, (i + 1) * cout), { ...a, group: 1 }, kernel),
    );
    return concat(parts, 0);
  }
  if ([x.shape[2], x.shape[3], g.shape[2], g.shape[3]].some((d) => typeof d !== 'number')) {
    // Not thrown here: the VJP builds every input's gradient, and one through x alone is fine.
    const message = `conv weight gradients need known spatial sizes; got ${x} and ${g}: trace training graphs at a fixed resolution`;
    return makeOp(UNAVAILABLE, [x, g], [g.shape[1], x.shape[1], kernel[0], kernel[1]], x.dtype, { message });
  }
  const xT = transpose(x, [1, 0, 2, 3]);
  const gT = transpose(g, [1, 0, 2, 3]);
  let wT = conv2d(xT, gT, undefined, { stride: a.dilations, dilation: a.strides, padding: a.pads });
  // The correlation can reach past the kernel when strides leave a remainder: keep the kernel's extent.
  if (wT.shape[2] !== kernel[0]) wT = slice(wT, 2, 0, kernel[0]);
  if (wT.shape[3] !== kernel[1]) wT = slice(wT, 3, 0, kernel[1]);
  return transpose(wT, [1, 0, 2, 3]);
}

/** y = x·Wᵀ + b over the last axis, with PyTorch's Linear weight layout [out, in]. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  const y = matmul(x, transposeLast(weight));
  return bias ? add(y, bias) : y;
}
