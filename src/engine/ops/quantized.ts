// The int8 forms of a linear layer and a convolution, emitted in place of the float op when a graph
// is compiled with `dtype: 'q8'` (see quantize.ts for the forms measured). Only the forward form of
// a frozen weight is rewritten: x · Wᵀ with W a checkpoint parameter, and conv2d(x, W) with one group
// and no dilation. Everything else (gradients, attention products, trainable weights) stays float.

import { type Dim, dimAdd, dimMul } from '../dims.ts';
import type { Emitter, QuantizedLayout } from '../emit.ts';
import type { Parameter } from '../parameter.ts';
import type { OpNode, Tensor } from '../tensor.ts';

/** The frozen parameter behind a tensor, if the tensor is one (a trainable one is a float graph input). */
function frozenParam(e: Emitter, t: Tensor): Parameter | undefined {
  return t.origin.kind === 'param' && !e.isTrainable(t.origin.param) ? t.origin.param : undefined;
}

/** uint8 activations (per-tensor scale and zero point), then acc · x_scale · w_scale[channel]. */
function integerProduct(e: Emitter, x: string, weight: Parameter, layout: QuantizedLayout, patches: (xq: string, zeroPoint: string) => string): string | undefined {
  const w = e.quantizedWeight(weight, layout);
  if (!w) return undefined;
  const [xq, xScale, xZero] = e.nodeOutputs('DynamicQuantizeLinear', [x], {}, { outputs: 3 });
  const acc = e.node('MatMulInteger', [patches(xq, xZero), w.values, xZero]);
  return e.node('Mul', [e.node('Cast', [acc], { to: 1 }), e.node('Mul', [xScale, w.scales])]);
}

/** x · Wᵀ for MatMul(x, Transpose(W)) with W a frozen [Cout, K] weight; undefined when not that form. */
export function emitQuantizedLinear(e: Emitter, n: OpNode): string | undefined {
  const [x, wt] = n.inputs;
  if (wt.origin.kind !== 'op' || wt.origin.node.spec.type !== 'Transpose' || wt.rank !== 2) return undefined;
  const weight = frozenParam(e, wt.origin.node.inputs[0]);
  if (!weight) return undefined;
  return integerProduct(e, e.value(x), weight, 'linear', (xq) => xq);
}

interface ConvAttrs {
  strides: [number, number];
  pads: [number, number, number, number];
  dilations: [number, number];
  group: number;
}

/**
 * conv2d as NHWC patches: the uint8 input transposed to NHWC, padded with its zero point (the
 * quantised 0), one strided slice per kernel tap concatenated along channels ([B, Ho, Wo, kh·kw·Cin]),
 * one MatMulInteger with the [kh·kw·Cin, Cout] weight, the bias added, and back to NCHW.
 */
export function emitQuantizedConv(e: Emitter, n: OpNode, out: Tensor): string | undefined {
  const [x, w, bias] = n.inputs;
  const a = n.attrs as unknown as ConvAttrs;
  const weight = frozenParam(e, w);
  if (!weight || a.group !== 1 || a.dilations.some((d) => d !== 1)) return undefined;
  const [kh, kw] = [w.shape[2] as number, w.shape[3] as number];
  const [sh, sw] = a.strides;
  const [pt, pl, pb, pr] = a.pads;
  const int64 = (values: number[]) => e.initializer(BigInt64Array.from(values, BigInt), [values.length], 'int64');
  const patches = (xq: string, zero: string) => {
    let nhwc = e.node('Transpose', [xq], { perm: [0, 2, 3, 1] });
    if (pt || pl || pb || pr) nhwc = e.node('Pad', [nhwc, int64([0, pt, pl, 0, 0, pb, pr, 0]), zero], { mode: 'constant' });
    if (kh === 1 && kw === 1 && sh === 1 && sw === 1) return nhwc;
    // Tap (i, j) reads rows i, i + sh, …, i + (Ho − 1)·sh: its end is i + (Ho − 1)·sh + 1.
    const [ho, wo] = [out.shape[2], out.shape[3]];
    const end = (size: Dim, i: number, stride: number) => dimAdd(dimMul(size, stride), i - stride + 1);
    const taps: string[] = [];
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        taps.push(e.node('Slice', [nhwc, int64([i, j]), e.shape([end(ho, i, sh), end(wo, j, sw)]), int64([1, 2]), int64([sh, sw])]));
      }
    }
    return taps.length === 1 ? taps[0] : e.node('Concat', taps, { axis: 3 });
  };
  let y = integerProduct(e, e.value(x), weight, 'conv', patches);
  if (y === undefined) return undefined;
  if (bias) y = e.node('Add', [y, e.value(bias)]);
  return e.node('Transpose', [y], { perm: [0, 3, 1, 2] });
}
