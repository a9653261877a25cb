// Reductions and the broadcast-undoing `sumTo` every elementwise VJP ends with.

import { type Dim, dimEquals, product, shapeToString } from '../dims.ts';
import { type OpSpec, Tensor, makeOp } from '../tensor.ts';
import { div, equal, mul, where } from './elementwise.ts';
import { expandAs, unsqueeze } from './shape.ts';

export function normalizeAxes(axes: number | readonly number[], rank: number, what: string): number[] {
  const list = typeof axes === 'number' ? [axes] : [...axes];
  const out = list.map((a) => {
    const axis = a < 0 ? a + rank : a;
    if (axis < 0 || axis >= rank) throw new Error(`${what}: axis ${a} out of range for rank ${rank}`);
    return axis;
  });
  return [...new Set(out)].sort((a, b) => a - b);
}

function reducedShape(shape: readonly Dim[], axes: readonly number[], keepDims: boolean): Dim[] {
  return keepDims ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : shape.filter((_, i) => !axes.includes(i));
}

/** Gradient of a reduction: the output gradient broadcast back over the reduced axes. */
function spread(g: Tensor, x: Tensor, axes: readonly number[], keepDims: boolean): Tensor {
  return expandAs(keepDims ? g : unsqueeze(g, axes), x);
}

const REDUCE_SUM: OpSpec = {
  type: 'ReduceSum',
  emit: (e, n) => e.node('ReduceSum', [e.value(n.inputs[0]), e.shape(n.attrs.axes as number[])], { keepdims: n.attrs.keepdims }),
  vjp: (g, n) => [spread(g, n.inputs[0], n.attrs.axes as number[], n.attrs.keepdims === 1)],
};

const REDUCE_MEAN: OpSpec = {
  type: 'ReduceMean',
  emit: (e, n) => e.node('ReduceMean', [e.value(n.inputs[0]), e.shape(n.attrs.axes as number[])], { keepdims: n.attrs.keepdims }),
  vjp: (g, n) => {
    const x = n.inputs[0];
    const axes = n.attrs.axes as number[];
    return [div(spread(g, x, axes, n.attrs.keepdims === 1), countOf(x, axes))];
  },
};

const REDUCE_MAX: OpSpec = {
  type: 'ReduceMax',
  emit: (e, n) => e.node('ReduceMax', [e.value(n.inputs[0]), e.shape(n.attrs.axes as number[])], { keepdims: n.attrs.keepdims }),
  vjp: (g, n, out) => {
    // The gradient goes to the maxima (shared equally between ties).
    const x = n.inputs[0];
    const axes = n.attrs.axes as number[];
    const keep = n.attrs.keepdims === 1;
    const isMax = where(equal(x, spread(out, x, axes, keep)), 1, 0);
    const ties = sum(isMax, axes, true);
    return [mul(div(isMax, ties), spread(g, x, axes, keep))];
  },
};

function reduce(spec: OpSpec, x: Tensor, axes: number | readonly number[] | undefined, keepDims: boolean): Tensor {
  const list = axes === undefined ? x.shape.map((_, i) => i) : normalizeAxes(axes, x.rank, spec.type);
  if (!list.length) return x;
  return makeOp(spec, [x], reducedShape(x.shape, list, keepDims), x.dtype, { axes: list, keepdims: keepDims ? 1 : 0 });
}

/** Sum over `axes` (all when omitted). */
export const sum = (x: Tensor, axes?: number | readonly number[], keepDims = false) => reduce(REDUCE_SUM, x, axes, keepDims);
export const mean = (x: Tensor, axes?: number | readonly number[], keepDims = false) => reduce(REDUCE_MEAN, x, axes, keepDims);
export const max = (x: Tensor, axes?: number | readonly number[], keepDims = false) => reduce(REDUCE_MAX, x, axes, keepDims);

/** Sums a broadcast gradient back down to `shape` (the inverse of NumPy broadcasting). */
export function sumTo(g: Tensor, shape: readonly Dim[]): Tensor {
  if (g.rank === shape.length && g.shape.every((d, i) => dimEquals(d, shape[i]))) return g;
  const lead = g.rank - shape.length;
  if (lead < 0) throw new Error(`sumTo: cannot sum ${shapeToString(g.shape)} to the larger ${shapeToString(shape)}`);
  const kept = shape.flatMap((d, i) => (d === 1 && g.shape[i + lead] !== 1 ? [i + lead] : []));
  let out = kept.length ? sum(g, kept, true) : g;
  if (lead) out = sum(out, Array.from({ length: lead }, (_, i) => i), false);
  return out;
}

const COUNT: OpSpec = {
  type: 'Count',
  emit: (e, n) => {
    const sizes = e.node('Gather', [e.shapeOf(n.inputs[0]), e.shape(n.attrs.axes as number[])], { axis: 0 });
    return e.node('Cast', [e.node('ReduceProd', [sizes], { keepdims: 0 })], { to: 1 });
  },
  vjp: () => [undefined], // a size, constant in the input's values
};

/** The number of elements along `axes` as a float scalar (computed at run time for symbolic sizes). */
export function countOf(x: Tensor, axes: readonly number[]): Tensor {
  const n = product(axes.map((a) => x.shape[a]));
  if (typeof n === 'number') return Tensor.scalar(n);
  return makeOp(COUNT, [x], [], 'float32', { axes: [...axes] });
}
