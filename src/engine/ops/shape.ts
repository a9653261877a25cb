// Shape and indexing primitives: reshape, transpose, slice, concat, expand, gather, pad, upsample.

import { type Dim, SymDim, convOutDim, dimAdd, dimEquals, dimMul, dimQuotient, product, shapeToString } from '../dims.ts';
import { type OpSpec, Tensor, makeOp } from '../tensor.ts';
import { normalizeAxes, sumTo } from './reduce.ts';

const RESHAPE: OpSpec = {
  type: 'Reshape',
  emit: (e, n) => e.node('Reshape', [e.value(n.inputs[0]), e.shape(n.attrs.shapeRef as never)]),
  vjp: (g, n) => [reshape(g, n.inputs[0].shape)],
};

/** Reshape; one entry may be -1 (inferred). */
export function reshape(x: Tensor, shape: readonly Dim[]): Tensor {
  const inferAt = shape.indexOf(-1);
  const target = [...shape];
  if (inferAt >= 0) {
    const known = product(shape.filter((_, i) => i !== inferAt));
    const inferred = dimQuotient(product(x.shape), known);
    if (inferred === undefined) throw new Error(`reshape: cannot infer -1 in ${shapeToString(shape)} from ${shapeToString(x.shape)}`);
    target[inferAt] = inferred;
  }
  if (!dimEquals(product(target), product(x.shape))) {
    throw new Error(`reshape: ${shapeToString(x.shape)} has ${product(x.shape)} elements, ${shapeToString(target)} has ${product(target)}`);
  }
  if (target.length === x.rank && target.every((d, i) => dimEquals(d, x.shape[i]))) return x;
  // The emitted shape keeps -1 where a symbolic size would otherwise need computing.
  const emitted = inferAt >= 0 && target[inferAt] instanceof SymDim ? shape : target;
  return makeOp(RESHAPE, [x], target, x.dtype, { shapeRef: emitted as never });
}

const TRANSPOSE: OpSpec = {
  type: 'Transpose',
  emit: (e, n) => e.node('Transpose', [e.value(n.inputs[0])], { perm: n.attrs.perm }),
  vjp: (g, n) => {
    const perm = n.attrs.perm as number[];
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return [transpose(g, inverse)];
  },
};

export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.length !== x.rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) throw new Error(`transpose: bad permutation [${perm}] for ${x}`);
  if (perm.every((p, i) => p === i)) return x;
  return makeOp(TRANSPOSE, [x], perm.map((p) => x.shape[p]), x.dtype, { perm: [...perm] });
}

/** Swaps the last two axes. */
export function transposeLast(x: Tensor): Tensor {
  const perm = x.shape.map((_, i) => i);
  [perm[x.rank - 2], perm[x.rank - 1]] = [perm[x.rank - 1], perm[x.rank - 2]];
  return transpose(x, perm);
}

const SLICE: OpSpec = {
  type: 'Slice',
  emit: (e, n) => {
    const { axis, start, end } = n.attrs as { axis: number; start: number; end: number };
    return e.node('Slice', [e.value(n.inputs[0]), e.shape([start]), e.shape([end]), e.shape([axis])]);
  },
  vjp: (g, n) => {
    const x = n.inputs[0];
    const { axis, start, end } = n.attrs as { axis: number; start: number; end: number };
    const pads = new Array<Dim>(2 * x.rank).fill(0);
    pads[axis] = start;
    pads[x.rank + axis] = end === Number.MAX_SAFE_INTEGER ? 0 : end < 0 ? -end : dimAdd(x.shape[axis], -end);
    return [pad(g, pads)];
  },
};

/** x[..., start:end, ...] along one axis (negative indices count from the end when the size is known). */
export function slice(x: Tensor, axis: number, start: number, end?: number): Tensor {
  const ax = normalizeAxes(axis, x.rank, 'slice')[0];
  const size = x.shape[ax];
  // Known sizes clamp the bounds as NumPy does, so the gradient's padding is never negative.
  const fix = (i: number) => (typeof size === 'number' ? Math.min(Math.max(i < 0 ? size + i : i, 0), size) : i);
  const s = fix(start);
  const e = end === undefined ? Number.MAX_SAFE_INTEGER : typeof size === 'number' ? Math.max(fix(end), s) : end;
  if (s < 0) throw new Error(`slice: negative start on a symbolic axis of ${x}`);
  let length: Dim;
  if (e === Number.MAX_SAFE_INTEGER) length = dimAdd(size, -s);
  else if (typeof size === 'number') length = e - s;
  else length = e < 0 ? dimAdd(size, e - s) : e - s; // a negative end counts from the symbolic end
  if (s === 0 && dimEquals(length, size)) return x;
  const shape = [...x.shape];
  shape[ax] = length;
  return makeOp(SLICE, [x], shape, x.dtype, { axis: ax, start: s, end: e });
}

/** Splits `x` along `axis` into pieces of the given sizes. */
export function split(x: Tensor, axis: number, sizes: readonly number[]): Tensor[] {
  let offset = 0;
  return sizes.map((s) => slice(x, axis, offset, (offset += s)));
}

/** Splits `x` along `axis` into `n` equal parts (sizes may be symbolic). */
export function chunk(x: Tensor, n: number, axis: number): Tensor[] {
  const ax = normalizeAxes(axis, x.rank, 'chunk')[0];
  const part = x.shape[ax];
  if (typeof part !== 'number') throw new Error(`chunk: axis ${axis} of ${x} is symbolic; split along a known size`);
  if (part % n) throw new Error(`chunk: ${part} does not divide into ${n}`);
  return split(x, ax, new Array(n).fill(part / n));
}

const CONCAT: OpSpec = {
  type: 'Concat',
  emit: (e, n) => e.node('Concat', n.inputs.map((i) => e.value(i)), { axis: n.attrs.axis }),
  vjp: (g, n) => {
    const axis = n.attrs.axis as number;
    let offset: Dim = 0;
    return n.inputs.map((x) => {
      const size = x.shape[axis];
      if (typeof offset !== 'number' || typeof size !== 'number') throw new Error('concat gradient needs known sizes along the concatenated axis');
      const part = slice(g, axis, offset, offset + size);
      offset += size;
      return part;
    });
  },
};

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (!xs.length) throw new Error('concat of nothing');
  if (xs.length === 1) return xs[0];
  const ax = normalizeAxes(axis, xs[0].rank, 'concat')[0];
  const shape = [...xs[0].shape];
  for (const x of xs.slice(1)) {
    if (x.rank !== shape.length || x.dtype !== xs[0].dtype || x.shape.some((d, i) => i !== ax && !dimEquals(d, shape[i]))) {
      throw new Error(`concat along ${ax}: ${xs[0]} and ${x} do not fit`);
    }
    shape[ax] = typeof shape[ax] === 'number' && typeof x.shape[ax] === 'number' ? (shape[ax] as number) + (x.shape[ax] as number) : addDims(shape[ax], x.shape[ax]);
  }
  return makeOp(CONCAT, xs, shape, xs[0].dtype, { axis: ax });
}

function addDims(a: Dim, b: Dim): Dim {
  if (typeof b === 'number') return dimAdd(a, b);
  if (typeof a === 'number') return dimAdd(b, a);
  if (dimEquals(a, b)) return dimMul(a, 2);
  throw new Error(`cannot add symbolic sizes ${a} and ${b}`);
}

const EXPAND: OpSpec = {
  type: 'Expand',
  emit: (e, n) => {
    const like = n.inputs[1];
    const shape = like ? e.shapeOf(like) : e.shape(n.attrs.shapeRef as never);
    return e.node('Expand', [e.value(n.inputs[0]), shape]);
  },
  vjp: (g, n) => [sumTo(g, n.inputs[0].shape)],
};

/** Broadcasts `x` to `shape`. */
export function expand(x: Tensor, shape: readonly Dim[]): Tensor {
  if (x.rank === shape.length && x.shape.every((d, i) => dimEquals(d, shape[i]))) return x;
  return makeOp(EXPAND, [x], shape, x.dtype, { shapeRef: [...shape] as never });
}

/** Broadcasts `x` to the run-time shape of `like` (exact even when sizes are symbolic expressions). */
export function expandAs(x: Tensor, like: Tensor): Tensor {
  if (x.rank === like.rank && x.shape.every((d, i) => dimEquals(d, like.shape[i]))) return x;
  return makeOp(EXPAND, [x, like], like.shape, x.dtype);
}

const UNSQUEEZE: OpSpec = {
  type: 'Unsqueeze',
  emit: (e, n) => e.node('Unsqueeze', [e.value(n.inputs[0]), e.shape(n.attrs.axes as number[])]),
  vjp: (g, n) => [squeeze(g, n.attrs.axes as number[])],
};
const SQUEEZE: OpSpec = {
  type: 'Squeeze',
  emit: (e, n) => e.node('Squeeze', [e.value(n.inputs[0]), e.shape(n.attrs.axes as number[])]),
  vjp: (g, n) => [unsqueeze(g, n.attrs.axes as number[])],
};

/** Inserts size-1 axes at `axes` (positions in the output). */
export function unsqueeze(x: Tensor, axes: number | readonly number[]): Tensor {
  const list = normalizeAxes(axes, x.rank + (typeof axes === 'number' ? 1 : axes.length), 'unsqueeze');
  const shape = [...x.shape];
  for (const a of list) shape.splice(a, 0, 1);
  return makeOp(UNSQUEEZE, [x], shape, x.dtype, { axes: list });
}

export function squeeze(x: Tensor, axes: number | readonly number[]): Tensor {
  const list = normalizeAxes(axes, x.rank, 'squeeze');
  if (list.some((a) => x.shape[a] !== 1)) throw new Error(`squeeze: axes [${list}] of ${x} are not all 1`);
  return makeOp(SQUEEZE, [x], x.shape.filter((_, i) => !list.includes(i)), x.dtype, { axes: list });
}

const GATHER: OpSpec = {
  type: 'Gather',
  emit: (e, n) => e.node('Gather', [e.value(n.inputs[0]), e.value(n.inputs[1])], { axis: 0 }),
  vjp: (g, n) => {
    const [table, indices] = n.inputs;
    return [scatterAddRows(table, indices, g), undefined];
  },
};

/** Rows of `table` (gathered along axis 0) at integer `indices`: an embedding lookup. */
export function gather(table: Tensor, indices: Tensor): Tensor {
  if (indices.dtype !== 'int64' && indices.dtype !== 'int32') throw new Error(`gather: indices must be integers, got ${indices}`);
  return makeOp(GATHER, [table, indices], [...indices.shape, ...table.shape.slice(1)], table.dtype);
}

const SCATTER_ADD_ROWS: OpSpec = {
  type: 'ScatterAddRows',
  emit: (e, n) => {
    const [table, indices, updates] = n.inputs;
    const zeros = e.node('ConstantOfShape', [e.shapeOf(table)], {});
    const idx = e.node('Unsqueeze', [e.node('Cast', [e.value(indices)], { to: 7 }), e.shape([-1])]);
    return e.node('ScatterND', [zeros, idx, e.value(updates)], { reduction: 'add' });
  },
};

/** zeros_like(table) with `updates` rows added at `indices` (repeated indices accumulate). */
export function scatterAddRows(table: Tensor, indices: Tensor, updates: Tensor): Tensor {
  return makeOp(SCATTER_ADD_ROWS, [table, indices, updates], table.shape, table.dtype);
}

const PAD: OpSpec = {
  type: 'Pad',
  emit: (e, n) => e.node('Pad', [e.value(n.inputs[0]), e.shape(n.attrs.pads as never), e.value(n.inputs[1])], { mode: 'constant' }),
  vjp: (g, n) => {
    const x = n.inputs[0];
    const pads = n.attrs.pads as unknown as number[];
    let out = g;
    x.shape.forEach((d, axis) => {
      const [before, after] = [pads[axis], pads[x.rank + axis]];
      if (before || after) out = slice(out, axis, before, typeof d === 'number' ? before + d : after ? -after : undefined);
    });
    return [out, undefined];
  },
};

/** Constant padding; `pads` is ONNX-style [begin_0, begin_1, …, end_0, end_1, …]. */
export function pad(x: Tensor, pads: readonly Dim[], value = 0): Tensor {
  if (pads.length !== 2 * x.rank) throw new Error(`pad: need ${2 * x.rank} pad sizes for ${x}, got ${pads.length}`);
  if (pads.every((p) => p === 0)) return x;
  const shape = x.shape.map((d, i) => padDim(d, pads[i], pads[x.rank + i]));
  return makeOp(PAD, [x, Tensor.scalar(value, x.dtype)], shape, x.dtype, { pads: [...pads] as never });
}

function padDim(d: Dim, before: Dim, after: Dim): Dim {
  if (typeof before === 'number' && typeof after === 'number') return dimAdd(d, before + after);
  // A symbolic pad only arises as the gradient of a slice: it restores the original size.
  if (typeof after !== 'number' && typeof d === 'number' && typeof before === 'number') return dimAdd(after, d + before);
  throw new Error(`pad: unsupported symbolic padding of ${d}`);
}

const UPSAMPLE: OpSpec = {
  type: 'UpsampleNearest2x',
  emit: (e, n) => {
    const scales = e.initializer(Float32Array.of(1, 1, 2, 2), [4], 'float32', 'scales');
    return e.node('Resize', [e.value(n.inputs[0]), '', scales], { mode: 'nearest', nearest_mode: 'floor', coordinate_transformation_mode: 'asymmetric' });
  },
  vjp: (g) => [sumPool2x(g)],
};

/** Nearest-neighbour 2× upsampling of NCHW. */
export function upsampleNearest2x(x: Tensor): Tensor {
  if (x.rank !== 4) throw new Error(`upsampleNearest2x needs NCHW, got ${x}`);
  const [n, c, h, w] = x.shape;
  return makeOp(UPSAMPLE, [x], [n, c, dimMul(h, 2), dimMul(w, 2)], x.dtype);
}

const RESIZE_LIKE: OpSpec = {
  type: 'ResizeNearestLike',
  emit: (e, n) => {
    const [x, like] = n.inputs;
    const sizes = e.node('Concat', [e.node('Shape', [e.value(x)], { start: 0, end: 2 }), e.node('Shape', [e.value(like)], { start: 2, end: 4 })], { axis: 0 });
    return e.node('Resize', [e.value(x), '', '', sizes], { mode: 'nearest', nearest_mode: 'floor', coordinate_transformation_mode: 'asymmetric' });
  },
  vjp: (g, n) => {
    const [x, like] = n.inputs;
    if (![2, 3].every((i) => dimEquals(like.shape[i], dimMul(x.shape[i], 2)))) throw new Error(`resizeNearestLike: no gradient for ${x} resized to ${like} (only for an exact 2×)`);
    return [sumPool2x(g), undefined];
  },
};

/**
 * Nearest-neighbour resize of NCHW `x` to the height and width `like` has at run time, as torch's
 * `interpolate(size=…, mode='nearest')`: source index ⌊dst · in/out⌋. A UNet's up path meets its
 * skips this way when the latents do not halve evenly (9 → 5 → 3 is met by 3 → 5 → 9).
 */
export function resizeNearestLike(x: Tensor, like: Tensor): Tensor {
  if (x.rank !== 4 || like.rank !== 4) throw new Error(`resizeNearestLike needs NCHW tensors, got ${x} and ${like}`);
  return makeOp(RESIZE_LIKE, [x, like], [x.shape[0], x.shape[1], like.shape[2], like.shape[3]], x.dtype);
}

const SUM_POOL: OpSpec = {
  type: 'SumPool2x',
  emit: (e, n) => e.node('Mul', [e.node('AveragePool', [e.value(n.inputs[0])], { kernel_shape: [2, 2], strides: [2, 2] }), e.initializer(Float32Array.of(4), [], 'float32')]),
  vjp: (g) => [upsampleNearest2x(g)],
};

/** Sums each 2×2 block of NCHW (the adjoint of nearest 2× upsampling). */
export function sumPool2x(x: Tensor): Tensor {
  const [n, c, h, w] = x.shape;
  return makeOp(SUM_POOL, [x], [n, c, convOutDim(h, 2, 2, 0, 1), convOutDim(w, 2, 2, 0, 1)], x.dtype);
}

const ZEROS: OpSpec = {
  type: 'Zeros',
  emit: (e, n) => e.node('ConstantOfShape', [e.shapeOf(n.inputs[0])], {}),
  // Reads only the shape of its input: no gradient flows, but one may pass through on the way.
  vjp: () => [undefined],
};

/** Zeros with the (run-time) shape of `like`. */
export function zerosLike(like: Tensor): Tensor {
  if (like.dtype !== 'float32') throw new Error(`zerosLike supports float32, got ${like}`);
  return makeOp(ZEROS, [like], like.shape, like.dtype);
}
