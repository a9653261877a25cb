// Elementwise primitives with NumPy broadcasting, and their VJPs.

import { broadcastShapes, shapeToString } from '../dims.ts';
import { ONNX_DTYPE, type Emitter } from '../emit.ts';
import { type DType, type OpNode, type OpSpec, Tensor, isFloat, makeOp } from '../tensor.ts';
import { sumTo } from './reduce.ts';

export type TensorLike = Tensor | number;

/** Lifts a number to a scalar of the other operand's dtype. */
export function lift(x: TensorLike, like: Tensor): Tensor {
  return typeof x === 'number' ? Tensor.scalar(x, like.dtype === 'bool' ? 'float32' : like.dtype) : x;
}

function simple(type: string, vjp?: OpSpec['vjp']): OpSpec {
  return { type, emit: (e: Emitter, n: OpNode) => e.node(type, n.inputs.map((i) => e.value(i)), n.attrs), vjp };
}

function binary(spec: OpSpec, a: TensorLike, b: TensorLike, dtype?: DType): Tensor {
  const ta = typeof a === 'number' ? lift(a, b as Tensor) : a;
  const tb = lift(b, ta);
  if (ta.dtype !== tb.dtype) throw new Error(`${spec.type}: dtypes differ, ${ta} and ${tb}`);
  return makeOp(spec, [ta, tb], broadcastShapes(ta.shape, tb.shape, spec.type), dtype ?? ta.dtype);
}

function unary(spec: OpSpec, x: Tensor): Tensor {
  if (!isFloat(x.dtype) && spec.type !== 'Neg' && spec.type !== 'Abs') throw new Error(`${spec.type} needs a float tensor, got ${x}`);
  return makeOp(spec, [x], x.shape, x.dtype);
}

const ADD: OpSpec = simple('Add', (g, n) => [sumTo(g, n.inputs[0].shape), sumTo(g, n.inputs[1].shape)]);
const SUB: OpSpec = simple('Sub', (g, n) => [sumTo(g, n.inputs[0].shape), sumTo(neg(g), n.inputs[1].shape)]);
const MUL: OpSpec = simple('Mul', (g, n) => [sumTo(mul(g, n.inputs[1]), n.inputs[0].shape), sumTo(mul(g, n.inputs[0]), n.inputs[1].shape)]);
const DIV: OpSpec = simple('Div', (g, n, out) => [
  sumTo(div(g, n.inputs[1]), n.inputs[0].shape),
  sumTo(neg(div(mul(g, out), n.inputs[1])), n.inputs[1].shape),
]);
const POW: OpSpec = simple('Pow', (g, n) => {
  const [x, e] = n.inputs;
  return [sumTo(mul(g, mul(e, pow(x, sub(e, 1)))), x.shape), undefined];
});
const NEG: OpSpec = simple('Neg', (g) => [neg(g)]);
const EXP: OpSpec = simple('Exp', (g, _n, out) => [mul(g, out)]);
const LOG: OpSpec = simple('Log', (g, n) => [div(g, n.inputs[0])]);
const SQRT: OpSpec = simple('Sqrt', (g, _n, out) => [div(mul(g, 0.5), out)]);
const RECIPROCAL: OpSpec = simple('Reciprocal', (g, _n, out) => [neg(mul(g, mul(out, out)))]);
const ERF: OpSpec = simple('Erf', (g, n) => {
  const x = n.inputs[0];
  return [mul(g, mul(exp(neg(mul(x, x))), 2 / Math.sqrt(Math.PI)))];
});
const TANH: OpSpec = simple('Tanh', (g, _n, out) => [mul(g, sub(1, mul(out, out)))]);
const SIGMOID: OpSpec = simple('Sigmoid', (g, _n, out) => [mul(g, mul(out, sub(1, out)))]);
const RELU: OpSpec = simple('Relu', (g, n) => [where(greater(n.inputs[0], 0), g, 0)]);
const ABS: OpSpec = simple('Abs', (g, n) => [mul(g, sign(n.inputs[0]))]);
const SIGN: OpSpec = simple('Sign', () => [undefined]);
const SIN: OpSpec = simple('Sin', (g, n) => [mul(g, cos(n.inputs[0]))]);
const COS: OpSpec = simple('Cos', (g, n) => [neg(mul(g, sin(n.inputs[0])))]);
const MAX: OpSpec = simple('Max', (g, n) => {
  const [a, b] = n.inputs;
  const takeA = greaterOrEqual(a, b);
  return [sumTo(where(takeA, g, 0), a.shape), sumTo(where(takeA, 0, g), b.shape)];
});
const EQUAL: OpSpec = simple('Equal');
const GREATER: OpSpec = simple('Greater');
const GREATER_OR_EQUAL: OpSpec = simple('GreaterOrEqual');
const LESS: OpSpec = simple('Less');
const WHERE: OpSpec = simple('Where', (g, n) => {
  const [cond, a, b] = n.inputs;
  return [undefined, sumTo(where(cond, g, 0), a.shape), sumTo(where(cond, 0, g), b.shape)];
});

export const add = (a: TensorLike, b: TensorLike) => binary(ADD, a, b);
export const sub = (a: TensorLike, b: TensorLike) => binary(SUB, a, b);
export const mul = (a: TensorLike, b: TensorLike) => binary(MUL, a, b);
export const div = (a: TensorLike, b: TensorLike) => binary(DIV, a, b);
/** Elementwise power; gradients flow to the base only (exponents here are constants). */
export const pow = (a: Tensor, exponent: TensorLike) => binary(POW, a, exponent);
export const maximum = (a: TensorLike, b: TensorLike) => binary(MAX, a, b);
export const equal = (a: TensorLike, b: TensorLike) => binary(EQUAL, a, b, 'bool');
export const greater = (a: TensorLike, b: TensorLike) => binary(GREATER, a, b, 'bool');
export const greaterOrEqual = (a: TensorLike, b: TensorLike) => binary(GREATER_OR_EQUAL, a, b, 'bool');
export const less = (a: TensorLike, b: TensorLike) => binary(LESS, a, b, 'bool');

export const neg = (x: Tensor) => unary(NEG, x);
export const exp = (x: Tensor) => unary(EXP, x);
export const log = (x: Tensor) => unary(LOG, x);
export const sqrt = (x: Tensor) => unary(SQRT, x);
export const reciprocal = (x: Tensor) => unary(RECIPROCAL, x);
export const erf = (x: Tensor) => unary(ERF, x);
export const tanh = (x: Tensor) => unary(TANH, x);
export const sigmoid = (x: Tensor) => unary(SIGMOID, x);
export const relu = (x: Tensor) => unary(RELU, x);
export const abs = (x: Tensor) => unary(ABS, x);
export const sign = (x: Tensor) => unary(SIGN, x);
export const sin = (x: Tensor) => unary(SIN, x);
export const cos = (x: Tensor) => unary(COS, x);

/** `cond ? a : b`, broadcasting all three. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  if (cond.dtype !== 'bool') throw new Error(`where: condition must be bool, got ${cond}`);
  const ta = typeof a === 'number' ? lift(a, b as Tensor) : a;
  const tb = lift(b, ta);
  const shape = broadcastShapes(broadcastShapes(cond.shape, ta.shape, 'Where'), tb.shape, 'Where');
  return makeOp(WHERE, [cond, ta, tb], shape, ta.dtype);
}

const CAST: OpSpec = {
  type: 'Cast',
  emit: (e, n) => e.node('Cast', [e.value(n.inputs[0])], { to: ONNX_DTYPE[n.attrs.to as DType] }),
  vjp: (g, n) => [isFloat(n.inputs[0].dtype) ? cast(g, n.inputs[0].dtype) : undefined],
};

export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  return makeOp(CAST, [x], x.shape, dtype, { to: dtype });
}

// Activations, composed from the primitives above.
export const silu = (x: Tensor) => mul(x, sigmoid(x));
/** GELU, exact (erf) form: x·Φ(x). */
export const gelu = (x: Tensor) => mul(mul(x, 0.5), add(erf(mul(x, Math.SQRT1_2)), 1));
/** GELU, tanh approximation. */
export const geluTanh = (x: Tensor) => mul(mul(x, 0.5), add(tanh(mul(add(x, mul(pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI))), 1));
/** CLIP's quick GELU: x·σ(1.702x). */
export const quickGelu = (x: Tensor) => mul(x, sigmoid(mul(x, 1.702)));

export function assertSameShape(a: Tensor, b: Tensor, what: string): void {
  if (shapeToString(a.shape) !== shapeToString(b.shape)) throw new Error(`${what}: shapes ${shapeToString(a.shape)} and ${shapeToString(b.shape)} differ`);
}
