// Forward results of every engine op on small hand-checked cases or naive JS references, with the
// fused ONNX Runtime kernels both on and off, plus symbolic sizes and session reuse.

import { afterEach, describe, expect, it } from 'vitest';
import * as E from '../../src/engine/index.ts';
import { expectClose, input, rand, run1 } from './helpers.ts';
import { attentionRef, conv2dRef, convTranspose2dRef, erfRef, matmulRef, normalizeBlocks, softmaxRows } from './reference.ts';

const fusedDefaults = { ...E.fusedKernels };
afterEach(() => Object.assign(E.fusedKernels, fusedDefaults));

/** Runs `y` and checks shape and values. */
async function check(y: E.Tensor, shape: number[], expected: ArrayLike<number>, atol = 1e-5, rtol = 1e-5): Promise<void> {
  expect(y.shape).toEqual(shape);
  const r = await run1(y);
  expect(r.shape).toEqual(shape);
  expectClose(r.data, expected, atol, rtol);
}

const map = (xs: ArrayLike<number>, f: (v: number) => number) => Array.from(xs, f);

describe('elementwise', () => {
  const a = () => input('a', [2, 3], [1, 2, 3, 4, 5, 6]);

  it('add/sub/mul/div broadcast a row [3] and a column [2, 1]', async () => {
    const row = () => input('row', [3], [10, 20, 30]);
    const col = () => input('col', [2, 1], [2, -1]);
    await check(E.add(a(), row()), [2, 3], [11, 22, 33, 14, 25, 36]);
    await check(E.sub(a(), col()), [2, 3], [-1, 0, 1, 5, 6, 7]);
    await check(E.mul(col(), row()), [2, 3], [20, 40, 60, -10, -20, -30]);
    await check(E.div(a(), col()), [2, 3], [0.5, 1, 1.5, -4, -5, -6]);
  });

  it('accepts numbers on either side', async () => {
    await check(E.sub(1, a()), [2, 3], [0, -1, -2, -3, -4, -5]);
    await check(E.div(a(), 2), [2, 3], [0.5, 1, 1.5, 2, 2.5, 3]);
    await check(E.add(E.mul(a(), 2), 1), [2, 3], [3, 5, 7, 9, 11, 13]);
  });

  it('pow with scalar and broadcast tensor exponents', async () => {
    await check(E.pow(a(), 2), [2, 3], [1, 4, 9, 16, 25, 36]);
    await check(E.pow(a(), 0.5), [2, 3], map([1, 2, 3, 4, 5, 6], Math.sqrt));
    await check(E.pow(a(), input('e', [3], [0, 1, 3])), [2, 3], [1, 2, 27, 1, 5, 216]);
    await check(E.pow(input('n', [2], [-2, -3]), 2), [2], [4, 9]);
  });

  it('unary maths', async () => {
    const xs = [-2.5, -1, -0.25, 0.3, 1, 2];
    const x = () => input('x', [6], xs);
    const pos = [0.25, 0.5, 1, 2, 4, 9];
    const p = () => input('p', [6], pos);
    const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
    await check(E.neg(x()), [6], map(xs, (v) => -v));
    await check(E.exp(x()), [6], map(xs, Math.exp));
    await check(E.log(p()), [6], map(pos, Math.log));
    await check(E.sqrt(p()), [6], map(pos, Math.sqrt));
    await check(E.reciprocal(p()), [6], map(pos, (v) => 1 / v));
    await check(E.erf(x()), [6], map(xs, erfRef), 1e-6);
    await check(E.tanh(x()), [6], map(xs, Math.tanh));
    await check(E.sigmoid(x()), [6], map(xs, sigmoid));
    await check(E.relu(x()), [6], [0, 0, 0, 0.3, 1, 2]);
    await check(E.abs(x()), [6], map(xs, Math.abs));
    await check(E.sign(x()), [6], [-1, -1, -1, 1, 1, 1]);
    await check(E.sin(x()), [6], map(xs, Math.sin));
    await check(E.cos(x()), [6], map(xs, Math.cos));
  });

  it('maximum broadcasts', async () => {
    await check(E.maximum(a(), input('m', [3], [2, 2, 7])), [2, 3], [2, 2, 7, 4, 5, 7]);
    await check(E.maximum(a(), 3.5), [2, 3], [3.5, 3.5, 3.5, 4, 5, 6]);
  });

  it('comparisons give bool; where selects with broadcasting', async () => {
    const b = () => input('b', [3], [2, 2, 6]);
    await check(E.equal(a(), b()), [2, 3], [0, 1, 0, 0, 0, 1]);
    await check(E.greater(a(), b()), [2, 3], [0, 0, 0, 1, 1, 0]);
    await check(E.greaterOrEqual(a(), b()), [2, 3], [0, 1, 0, 1, 1, 1]);
    await check(E.less(a(), 3), [2, 3], [1, 1, 0, 0, 0, 0]);
    expect(E.less(a(), 3).dtype).toBe('bool');
    const x = a();
    await check(E.where(E.greater(x, 3), x, E.neg(x)), [2, 3], [-1, -2, -3, 4, 5, 6]);
    await check(E.where(E.less(b(), 3), 1, 0), [3], [1, 1, 0]);
    await check(E.where(E.less(input('c', [2, 1], [0, 5]), 1), b(), -1), [2, 3], [2, 2, 6, -1, -1, -1]);
  });

  it('cast between float, int64 and bool', async () => {
    const x = () => input('x', [4], [1, -2, 3, 0]);
    const asInt = E.cast(x(), 'int64');
    expect(asInt.dtype).toBe('int64');
    await check(asInt, [4], [1, -2, 3, 0]);
    await check(E.cast(E.add(asInt, E.Tensor.scalar(1, 'int64')), 'float32'), [4], [2, -1, 4, 1]);
    await check(E.cast(E.greater(x(), 0), 'float32'), [4], [1, 0, 1, 0]);
    const same = x();
    expect(E.cast(same, 'float32')).toBe(same);
  });

  it('activations: silu, gelu (erf), geluTanh, quickGelu', async () => {
    const xs = [-3, -1, -0.5, 0, 0.5, 1, 3];
    const x = () => input('x', [7], xs);
    const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
    await check(E.silu(x()), [7], map(xs, (v) => v * sigmoid(v)));
    await check(E.gelu(x()), [7], map(xs, (v) => 0.5 * v * (1 + erfRef(v / Math.SQRT2))), 1e-6);
    await check(E.geluTanh(x()), [7], map(xs, (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))));
    await check(E.quickGelu(x()), [7], map(xs, (v) => v * sigmoid(1.702 * v)));
  });
});

describe('reductions', () => {
  // [2, 3, 2] = 0..11
  const x = () => input('x', [2, 3, 2], [...Array(12).keys()]);

  it('sum over all, one axis, several axes, keepDims, negative axes', async () => {
    await check(E.sum(x()), [], [66]);
    await check(E.sum(x(), 0), [3, 2], [6, 8, 10, 12, 14, 16]);
    await check(E.sum(x(), 1, true), [2, 1, 2], [6, 9, 24, 27]);
    // x[i][j][k] = 6i + 2j + k, so Σ_i Σ_k = 8j + 14
    await check(E.sum(x(), [0, 2]), [3], [14, 22, 30]);
    await check(E.sum(x(), -1), [2, 3], [1, 5, 9, 13, 17, 21]);
  });

  it('mean and max', async () => {
    await check(E.mean(x()), [], [5.5]);
    await check(E.mean(x(), [1], true), [2, 1, 2], [2, 3, 8, 9]);
    await check(E.mean(x(), -1), [2, 3], [0.5, 2.5, 4.5, 6.5, 8.5, 10.5]);
    const v = () => input('v', [2, 3], [3, -1, 7, -4, -2, -9]);
    await check(E.max(v()), [], [7]);
    await check(E.max(v(), 0), [3], [3, -1, 7]);
    await check(E.max(v(), 1, true), [2, 1], [7, -2]);
  });
});

describe('shape ops', () => {
  const x = () => input('x', [2, 3, 4], [...Array(24).keys()]);
  const iota = (n: number) => [...Array(n).keys()];

  it('reshape, with -1 inferred', async () => {
    await check(E.reshape(x(), [4, -1]), [4, 6], iota(24));
    await check(E.reshape(x(), [-1]), [24], iota(24));
    await check(E.reshape(x(), [2, 12]), [2, 12], iota(24));
    expect(() => E.reshape(x(), [5, -1])).toThrow(/reshape.*\[5, -1\].*\[2, 3, 4\]/);
    expect(() => E.reshape(x(), [5, 5])).toThrow(/\[2, 3, 4\].*24.*\[5, 5\].*25/);
  });

  it('transpose', async () => {
    const m = () => input('m', [2, 3], [1, 2, 3, 4, 5, 6]);
    await check(E.transpose(m(), [1, 0]), [3, 2], [1, 4, 2, 5, 3, 6]);
    await check(E.transposeLast(m()), [3, 2], [1, 4, 2, 5, 3, 6]);
    // [2,3,4] → [4,2,3]: out[k][i][j] = x[i][j][k] = 12i + 4j + k
    const expected: number[] = [];
    for (let k = 0; k < 4; k++) for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) expected.push(12 * i + 4 * j + k);
    await check(E.transpose(x(), [2, 0, 1]), [4, 2, 3], expected);
    const rank11 = E.Tensor.input('r', [2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3]);
    expect(E.transpose(rank11, [10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).shape).toEqual([3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    expect(() => E.transpose(x(), [0, 0, 1])).toThrow(/bad permutation/);
  });

  it('slice: ranges, negative indices, open end, past the end', async () => {
    const v = () => input('v', [6], [0, 1, 2, 3, 4, 5]);
    await check(E.slice(v(), 0, 1, 4), [3], [1, 2, 3]);
    await check(E.slice(v(), 0, -2), [2], [4, 5]);
    await check(E.slice(v(), 0, 1, -1), [4], [1, 2, 3, 4]);
    await check(E.slice(v(), 0, 3, 100), [3], [3, 4, 5]);
    await check(E.slice(x(), 2, 1, 3), [2, 3, 2], [1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22]);
    await check(E.slice(x(), -2, 2), [2, 1, 4], [8, 9, 10, 11, 20, 21, 22, 23]);
  });

  it('split and chunk', async () => {
    const [p, q] = E.split(x(), 1, [1, 2]);
    await check(p, [2, 1, 4], [0, 1, 2, 3, 12, 13, 14, 15]);
    await check(q, [2, 2, 4], [4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23]);
    const parts = E.chunk(x(), 2, -1);
    expect(parts).toHaveLength(2);
    await check(parts[1], [2, 3, 2], [2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23]);
    expect(() => E.chunk(x(), 3, 2)).toThrow(/4 does not divide into 3/);
  });

  it('concat along inner and outer axes', async () => {
    const a = () => input('a', [2, 2], [1, 2, 3, 4]);
    const b = () => input('b', [2, 1], [9, 8]);
    await check(E.concat([a(), b()], 1), [2, 3], [1, 2, 9, 3, 4, 8]);
    const m = a();
    await check(E.concat([m, E.transpose(b(), [1, 0]), m], 0), [5, 2], [1, 2, 3, 4, 9, 8, 1, 2, 3, 4]);
    expect(() => E.concat([a(), b()], 0)).toThrow(/concat along 0/);
  });

  it('expand and expandAs', async () => {
    const r = () => input('r', [3], [1, 2, 3]);
    await check(E.expand(r(), [2, 3]), [2, 3], [1, 2, 3, 1, 2, 3]);
    await check(E.expand(input('c', [2, 1], [5, 6]), [2, 3]), [2, 3], [5, 5, 5, 6, 6, 6]);
    await check(E.expandAs(r(), input('like', [2, 2, 3], new Float32Array(12))), [2, 2, 3], [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
  });

  it('unsqueeze and squeeze', async () => {
    const m = () => input('m', [2, 3], [1, 2, 3, 4, 5, 6]);
    await check(E.unsqueeze(m(), 0), [1, 2, 3], [1, 2, 3, 4, 5, 6]);
    await check(E.unsqueeze(m(), [1, 3]), [2, 1, 3, 1], [1, 2, 3, 4, 5, 6]);
    await check(E.unsqueeze(m(), -1), [2, 3, 1], [1, 2, 3, 4, 5, 6]);
    await check(E.squeeze(input('s', [1, 3, 1], [7, 8, 9]), [0, 2]), [3], [7, 8, 9]);
    expect(() => E.squeeze(m(), 0)).toThrow(/not all 1/);
  });

  it('gather rows with int64 and int32 indices of any rank', async () => {
    const table = () => input('table', [4, 2], [0, 1, 10, 11, 20, 21, 30, 31]);
    await check(E.gather(table(), E.Tensor.constant([3, 0, 3], [3], 'int64')), [3, 2], [30, 31, 0, 1, 30, 31]);
    await check(E.gather(table(), input('ids', [2, 2], Int32Array.from([1, 2, 2, 0]), { dtype: 'int32' })), [2, 2, 2], [10, 11, 20, 21, 20, 21, 0, 1]);
    expect(() => E.gather(table(), table())).toThrow(/indices must be integers/);
  });

  it('pad with zeros and a value', async () => {
    const m = () => input('m', [2, 2], [1, 2, 3, 4]);
    await check(E.pad(m(), [1, 0, 0, 2]), [3, 4], [0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0]);
    await check(E.pad(m(), [0, 1, 1, 0], -1), [3, 3], [-1, 1, 2, -1, 3, 4, -1, -1, -1]);
  });

  it('upsampleNearest2x and sumPool2x', async () => {
    const img = () => input('img', [1, 1, 2, 2], [1, 2, 3, 4]);
    await check(E.upsampleNearest2x(img()), [1, 1, 4, 4], [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    const big = () => input('big', [1, 2, 2, 4], [...iota(16)]);
    await check(E.sumPool2x(big()), [1, 2, 1, 2], [0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15]);
  });

  it('resizeNearestLike: torch nearest to another tensor\'s height and width (source index ⌊dst · in/out⌋)', async () => {
    const img = () => input('img', [1, 1, 2, 3], [1, 2, 3, 4, 5, 6]);
    // rows 0,0,1 of 2; columns 0,0,1,1,2 of 3 (⌊j · 3/5⌋)
    await check(E.resizeNearestLike(img(), E.zerosLike(input('like', [1, 7, 3, 5], new Float32Array(105)))), [1, 1, 3, 5], [1, 1, 2, 2, 3, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6]);
  });

  it('zerosLike', async () => {
    await check(E.add(E.zerosLike(x()), 1), [2, 3, 4], new Array(24).fill(1));
  });
});

describe('linear algebra', () => {
  it('matmul: 2-D, batched, broadcast batch', async () => {
    const a = rand(2 * 2 * 3, 1);
    const b = rand(2 * 3 * 4, 2);
    await check(E.matmul(input('a', [2, 3], a.slice(0, 6)), input('b', [3, 4], b.slice(0, 12))), [2, 4], matmulRef(a, b, 2, 3, 4));
    const batched = [...matmulRef(a, b, 2, 3, 4), ...matmulRef(a.slice(6), b.slice(12), 2, 3, 4)];
    await check(E.matmul(input('a', [2, 2, 3], a), input('b', [2, 3, 4], b)), [2, 2, 4], batched);
    // [2, 2, 3] × [3, 4]: the matrix is shared by both batches.
    const shared = [...matmulRef(a, b, 2, 3, 4), ...matmulRef(a.slice(6), b, 2, 3, 4)];
    await check(E.matmul(input('a', [2, 2, 3], a), input('b', [3, 4], b.slice(0, 12))), [2, 2, 4], shared);
    // [1, 2, 3] × [2, 3, 4]
    const left = [...matmulRef(a, b, 2, 3, 4), ...matmulRef(a, b.slice(12), 2, 3, 4)];
    await check(E.matmul(input('a', [1, 2, 3], a.slice(0, 6)), input('b', [2, 3, 4], b)), [2, 2, 4], left);
    expect(() => E.matmul(input('a', [2, 3], a.slice(0, 6)), input('b', [4, 3], b.slice(0, 12)))).toThrow(/\[2, 3\] × \[4, 3\]/);
  });

  it('gemm with transB and bias; linear', async () => {
    const a = [1, 2, 3, 4, 5, 6]; // [2, 3]
    const w = [1, 0, -1, 2, 1, 0]; // [2, 3] as [N, K]
    const bias = [10, 20];
    // a · wᵀ = [[1-3, 2+2], [4-6, 8+5]] = [[-2, 4], [-2, 13]]
    await check(E.gemm(input('a', [2, 3], a), input('w', [2, 3], w), input('c', [2], bias), true), [2, 2], [8, 24, 8, 33]);
    await check(E.gemm(input('a', [2, 3], a), E.transpose(input('w', [2, 3], w), [1, 0])), [2, 2], [-2, 4, -2, 13]);
    await check(E.linear(input('a', [1, 2, 3], a), input('w', [2, 3], w), input('c', [2], bias)), [1, 2, 2], [8, 24, 8, 33]);
  });

  const convCases: { name: string; xs: number[]; ws: number[]; opts: E.ConvOptions; ref: Parameters<typeof conv2dRef>[5]; bias?: boolean }[] = [
    { name: '3×3, bias', xs: [2, 2, 5, 5], ws: [3, 2, 3, 3], opts: {}, ref: {}, bias: true },
    { name: 'stride 2, padding 1', xs: [1, 2, 6, 6], ws: [2, 2, 3, 3], opts: { stride: 2, padding: 1 }, ref: { stride: [2, 2], pads: [1, 1, 1, 1] } },
    { name: 'asymmetric padding [t, l, b, r]', xs: [1, 1, 4, 5], ws: [2, 1, 3, 2], opts: { padding: [0, 1, 2, 0] }, ref: { pads: [0, 1, 2, 0] } },
    { name: '[vertical, horizontal] padding, stride [1, 2]', xs: [1, 2, 5, 7], ws: [1, 2, 3, 3], opts: { padding: [1, 2], stride: [1, 2] }, ref: { pads: [1, 2, 1, 2], stride: [1, 2] } },
    { name: 'dilation 2', xs: [1, 1, 7, 7], ws: [2, 1, 3, 3], opts: { dilation: 2, padding: 1 }, ref: { dilation: [2, 2], pads: [1, 1, 1, 1] } },
    { name: 'groups 2', xs: [2, 4, 4, 4], ws: [6, 2, 3, 3], opts: { groups: 2, padding: 1 }, ref: { groups: 2, pads: [1, 1, 1, 1] }, bias: true },
    { name: 'depthwise, stride 2, odd size', xs: [1, 3, 5, 5], ws: [3, 1, 3, 3], opts: { groups: 3, stride: 2 }, ref: { groups: 3, stride: [2, 2] } },
  ];
  for (const c of convCases) {
    it(`conv2d ${c.name}`, async () => {
      const xv = rand(c.xs.reduce((p, q) => p * q), 3);
      const wv = rand(c.ws.reduce((p, q) => p * q), 4);
      const bv = c.bias ? rand(c.ws[0], 5) : undefined;
      const ref = conv2dRef(xv, c.xs, wv, c.ws, bv, c.ref);
      const y = E.conv2d(input('x', c.xs, xv), input('w', c.ws, wv), bv && input('b', [c.ws[0]], bv), c.opts);
      await check(y, ref.shape, ref.data, 1e-5, 1e-4);
    });
  }

  const convTransposeCases: { name: string; xs: number[]; ws: number[]; opts: E.ConvOptions & { outputPadding?: [number, number] }; ref: Parameters<typeof convTranspose2dRef>[5] }[] = [
    { name: 'stride 2, kernel 4, padding 1', xs: [1, 2, 3, 3], ws: [2, 3, 4, 4], opts: { stride: 2, padding: 1 }, ref: { stride: [2, 2], pads: [1, 1, 1, 1] } },
    { name: 'stride 2 with output padding', xs: [2, 1, 3, 2], ws: [1, 2, 3, 3], opts: { stride: 2, padding: 1, outputPadding: [1, 1] }, ref: { stride: [2, 2], pads: [1, 1, 1, 1], outputPadding: [1, 1] } },
    { name: 'dilation 2, groups 2', xs: [1, 4, 3, 3], ws: [4, 1, 2, 2], opts: { dilation: 2, groups: 2 }, ref: { dilation: [2, 2], groups: 2 } },
  ];
  for (const c of convTransposeCases) {
    it(`convTranspose2d ${c.name}`, async () => {
      const xv = rand(c.xs.reduce((p, q) => p * q), 6);
      const wv = rand(c.ws.reduce((p, q) => p * q), 7);
      const bv = rand(c.ws[1] * (c.opts.groups ?? 1), 8);
      const ref = convTranspose2dRef(xv, c.xs, wv, c.ws, bv, c.ref);
      const y = E.convTranspose2d(input('x', c.xs, xv), input('w', c.ws, wv), input('b', [bv.length], bv), c.opts);
      await check(y, ref.shape, ref.data, 1e-5, 1e-4);
    });
  }

  it('conv2d names the shapes when channels do not match', () => {
    const x = E.Tensor.input('x', [1, 3, 4, 4]);
    expect(() => E.conv2d(x, E.Tensor.input('w', [2, 2, 3, 3]))).toThrow(/3 channels.*\[2, 2, 3, 3\].*expects 2/);
  });
});

describe('normalisation, softmax, attention', () => {
  it('softmax and logSoftmax over the last and a middle axis', async () => {
    const xv = rand(2 * 3 * 4, 9, -3, 3);
    const x = () => input('x', [2, 3, 4], xv);
    const sm = softmaxRows(xv, 4);
    await check(E.softmax(x()), [2, 3, 4], sm, 1e-6);
    await check(E.logSoftmax(x(), -1), [2, 3, 4], map(sm, Math.log), 1e-5);
    // axis 1: softmax over the 3 entries with the same (batch, last) index.
    const t = E.transpose(E.softmax(E.transpose(x(), [0, 2, 1])), [0, 2, 1]);
    const direct = await run1(E.softmax(x(), 1));
    expectClose(direct.data, (await run1(t)).data, 1e-6);
  });

  for (const fused of [true, false]) {
    const mode = fused ? 'fused' : 'plain ops';

    it(`layerNorm (${mode})`, async () => {
      E.fusedKernels.layerNorm = fused;
      const xv = rand(2 * 3 * 8, 10, -2, 3);
      const w = rand(8, 11);
      const b = rand(8, 12);
      const expected = normalizeBlocks(xv, 8, 1e-5, (i, v) => v * w[i % 8] + b[i % 8]);
      await check(E.layerNorm(input('x', [2, 3, 8], xv), input('w', [8], w), input('b', [8], b)), [2, 3, 8], expected, 1e-5, 1e-4);
      // A large eps shows that eps is honoured.
      const wide = normalizeBlocks(xv, 8, 0.5, (i, v) => v * w[i % 8] + b[i % 8]);
      await check(E.layerNorm(input('x', [2, 3, 8], xv), input('w', [8], w), input('b', [8], b), 0.5), [2, 3, 8], wide, 1e-5, 1e-4);
    });

    it(`groupNorm on NCHW and NCL (${mode})`, async () => {
      E.fusedKernels.groupNorm = fused;
      // [N=2, C=6, H=2, W=3], 3 groups of 2 channels: each block of 2·6 values is normalised together.
      const xv = rand(2 * 6 * 6, 13, -1, 4);
      const w = rand(6, 14);
      const b = rand(6, 15);
      const channelOf = (i: number, hw: number) => Math.floor(i / hw) % 6;
      const expected = normalizeBlocks(xv, 12, 1e-5, (i, v) => v * w[channelOf(i, 6)] + b[channelOf(i, 6)]);
      await check(E.groupNorm(input('x', [2, 6, 2, 3], xv), 3, input('w', [6], w), input('b', [6], b)), [2, 6, 2, 3], expected, 1e-5, 1e-4);
      const ncl = normalizeBlocks(xv, 36, 1e-3, (i, v) => v * w[channelOf(i, 6)] + b[channelOf(i, 6)]);
      await check(E.groupNorm(input('x', [2, 6, 6], xv), 1, input('w', [6], w), input('b', [6], b), 1e-3), [2, 6, 6], ncl, 1e-5, 1e-4);
    });

    it(`attention vs a naive reference (${mode})`, async () => {
      E.fusedKernels.attention = fused;
      const [b, lq, lk, c, heads] = [2, 3, 5, 8, 2];
      const q = rand(b * lq * c, 16, -2, 2);
      const k = rand(b * lk * c, 17, -2, 2);
      const v = rand(b * lk * c, 18);
      const y = E.attention(input('q', [b, lq, c], q), input('k', [b, lk, c], k), input('v', [b, lk, c], v), heads);
      await check(y, [b, lq, c], attentionRef(q, k, v, b, lq, lk, c, c, heads), 1e-5, 1e-4);
      const scaled = E.attention(input('q', [b, lq, c], q), input('k', [b, lk, c], k), input('v', [b, lk, c], v), 4, 0.3);
      await check(scaled, [b, lq, c], attentionRef(q, k, v, b, lq, lk, c, c, 4, 0.3), 1e-5, 1e-4);
      // Values narrower than queries and keys (v_hidden_size ≠ hidden_size).
      const narrow = v.slice(0, b * lk * 4);
      const y2 = E.attention(input('q', [b, lq, c], q), input('k', [b, lk, c], k), input('v', [b, lk, 4], narrow), heads);
      await check(y2, [b, lq, 4], attentionRef(q, k, narrow, b, lq, lk, c, 4, heads), 1e-5, 1e-4);
    });
  }

  it('attentionProbs rows are softmax(q·kᵀ·scale)', async () => {
    const q = rand(1 * 2 * 4, 19);
    const k = rand(1 * 3 * 4, 20);
    const p = await run1(E.attentionProbs(input('q', [1, 2, 4], q), input('k', [1, 3, 4], k), 1, 0.5));
    expect(p.shape).toEqual([1, 1, 2, 3]);
    expectClose(p.data, softmaxRows(map(matmulRef(q, transposed(k, 3, 4), 2, 4, 3), (v) => v * 0.5), 3), 1e-6);
  });
});

function transposed(m: ArrayLike<number>, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = m[i * cols + j];
  return out;
}

describe('symbolic sizes', () => {
  /** A small conv → GroupNorm → attention over H·W/4 tokens → upsample block on [B, 4, H, W]. */
  function net(x: E.Tensor): { down: E.Tensor; y: E.Tensor } {
    const w = E.Tensor.constant(rand(4 * 4 * 9, 21, -0.3, 0.3), [4, 4, 3, 3]);
    const down = E.conv2d(x, w, undefined, { stride: 2, padding: 1 }); // [B, 4, H/2, W/2]
    const normed = E.groupNorm(down, 2, E.Tensor.constant(new Float32Array(4).fill(1), [4]), E.Tensor.constant(new Float32Array(4), [4]));
    const tokens = E.transpose(E.reshape(normed, [x.shape[0], 4, -1]), [0, 2, 1]); // [B, H·W/4, 4]
    const attended = E.attention(tokens, tokens, tokens, 2);
    const back = E.reshape(E.transpose(attended, [0, 2, 1]), down.shape);
    const up = E.upsampleNearest2x(E.add(back, down)); // [B, 4, H, W]
    return { down, y: E.add(E.silu(up), E.mean(x, [2, 3], true)) };
  }

  function block() {
    const x = E.Tensor.input('x', [E.sym('B'), 4, E.sym('H'), E.sym('W')]);
    return { x, ...net(x) };
  }

  it('derives output shapes symbolically', () => {
    const { down, y } = block();
    expect(E.shapeToString(down.shape)).toBe('[B, 4, 1/2*H, 1/2*W]');
    expect(E.shapeToString(y.shape)).toBe('[B, 4, H, W]');
  });

  for (const fused of [true, false]) {
    it(`one compile serves two sizes and the same graph reuses its session (${fused ? 'fused' : 'plain'} norms and attention)`, async () => {
      Object.assign(E.fusedKernels, { layerNorm: fused, groupNorm: fused, attention: fused });
      const first = block();
      const graph = await E.compile({ inputs: [first.x], outputs: { y: first.y, down: first.down } });
      const again = block(); // traced afresh: new Tensors, same graph
      const graph2 = await E.compile({ inputs: [again.x], outputs: { y: again.y, down: again.down } });
      expect(graph2.session).toBe(graph.session);

      for (const [b, h, w] of [[1, 4, 6], [3, 8, 4]]) {
        const xv = rand(b * 4 * h * w, b + h + w);
        const r = await graph.run({ x: { data: xv, shape: [b, 4, h, w] } });
        expect(r.y.shape).toEqual([b, 4, h, w]);
        expect(r.down.shape).toEqual([b, 4, h / 2, w / 2]);
        // The same block traced at this fixed size agrees.
        const fixed = E.Tensor.input('x', [b, 4, h, w]);
        const fixedGraph = await E.compile({ inputs: [fixed], outputs: { y: net(fixed).y } });
        const expected = await fixedGraph.run({ x: { data: xv, shape: [b, 4, h, w] } });
        expectClose(r.y.data as Float32Array, expected.y.data as Float32Array, 1e-5, 1e-4);
      }
    });
  }

  it('sizes a stride-2 conv rounds up: reshapes read them off the tensors, a resize meets the input again', async () => {
    // H/2 computed from the input's H would floor 9 to 4; the conv gives 5.
    const block = (x: E.Tensor) => {
      const down = E.conv2d(x, E.Tensor.constant(rand(2 * 2 * 9, 5), [2, 2, 3, 3]), undefined, { stride: 2, padding: 1 });
      const tokens = E.reshape(down, [x.shape[0], 2, -1]); // [B, 2, h·w]
      const back = E.reshape(E.mul(E.softmax(tokens, -1), 10), down.shape);
      return E.resizeNearestLike(back, x);
    };
    const x = E.Tensor.input('x', [E.sym('B'), 2, E.sym('H'), E.sym('W')]);
    const graph = await E.compile({ inputs: [x], outputs: { y: block(x) } });
    for (const [h, w] of [[9, 5], [3, 8], [1, 1]]) {
      const xv = rand(2 * h * w, h * w);
      const r = await graph.run({ x: { data: xv, shape: [1, 2, h, w] } });
      expect(r.y.shape).toEqual([1, 2, h, w]);
      const fixed = E.Tensor.input('x', [1, 2, h, w]);
      const expected = await (await E.compile({ inputs: [fixed], outputs: { y: block(fixed) } })).run({ x: { data: xv, shape: [1, 2, h, w] } });
      expectClose(r.y.data as Float32Array, expected.y.data as Float32Array, 1e-6, 1e-5);
    }
  });

  it('symbolic slice, pad, concat and expand', async () => {
    const L = E.sym('L');
    const x = E.Tensor.input('x', [2, L]);
    const tail = E.slice(x, 1, 1); // [2, L-1]
    const trimmed = E.slice(x, 1, 0, -1); // [2, L-1]
    const both = E.concat([E.pad(tail, [0, 0, 0, 1]), x], 0); // [4, L]
    const g = await E.compile({ inputs: [x], outputs: { d: E.sub(tail, trimmed), both, e: E.expand(E.Tensor.constant([1, 2], [2, 1]), [2, L]) } });
    for (const l of [3, 5]) {
      const xv = Float32Array.from({ length: 2 * l }, (_, i) => i * i);
      const r = await g.run({ x: { data: xv, shape: [2, l] } });
      expect(r.d.shape).toEqual([2, l - 1]);
      const diffs = [0, 1].flatMap((row) => [...Array(l - 1).keys()].map((j) => xv[row * l + j + 1] - xv[row * l + j]));
      expectClose(r.d.data as Float32Array, diffs);
      expect(r.both.shape).toEqual([4, l]);
      expect(r.e.shape).toEqual([2, l]);
    }
  });
});

describe('errors name what is wrong', () => {
  it('a wrong-shaped input names the input and both shapes', async () => {
    const x = E.Tensor.input('pixels', [E.sym('B'), 3, 4]);
    const g = await E.compile({ inputs: [x], outputs: { y: E.mul(x, 2) } });
    await expect(g.run({ pixels: { data: new Float32Array(2 * 3 * 5), shape: [2, 3, 5] } })).rejects.toThrow(/"pixels".*\[B, 3, 4\].*\[2, 3, 5\]/);
    await expect(g.run({ pixels: { data: new Float32Array(5), shape: [2, 3, 4] } })).rejects.toThrow(/"pixels".*5 values/);
    await expect(g.run({})).rejects.toThrow(/missing input "pixels"/);
  });

  it('a symbolic size bound twice to different values names the size', async () => {
    const B = E.sym('B');
    const a = E.Tensor.input('a', [B, 2]);
    const b = E.Tensor.input('b', [B, 2]);
    const g = await E.compile({ inputs: [a, b], outputs: { y: E.add(a, b) } });
    await expect(g.run({ a: { data: new Float32Array(4), shape: [2, 2] }, b: { data: new Float32Array(6), shape: [3, 2] } })).rejects.toThrow(/"b".*B is 2.*3/);
  });

  it('clashing graph names are refused before ONNX Runtime sees them', async () => {
    const a = E.Tensor.input('a', [2]);
    await expect(E.compile({ inputs: [a, E.Tensor.input('a', [2])], outputs: { y: a } })).rejects.toThrow(/"a" is declared twice/);
    await expect(E.compile({ inputs: [a], outputs: { a: E.neg(a) } })).rejects.toThrow(/output "a".*same name as a graph input/);
    const p = new E.Parameter('a', [2]);
    await expect(E.compile({ inputs: [a], outputs: { y: E.add(a, p.tensor) }, trainable: [p] })).rejects.toThrow(/parameter "a".*same name/);
  });

  it('mismatched operands name both shapes', () => {
    const a = E.Tensor.input('a', [2, 3]);
    expect(() => E.add(a, E.Tensor.input('b', [4]))).toThrow(/Add.*\[2, 3\].*\[4\]/);
    expect(() => E.mul(a, E.Tensor.input('b', [E.sym('N'), 3]))).toThrow(/Mul.*\[2, 3\].*\[N, 3\]/);
    expect(() => E.matmul(a, E.Tensor.input('b', [2, 3]))).toThrow(/\[2, 3\] × \[2, 3\]/);
    expect(() => E.layerNorm(a, E.Tensor.input('w', [4]), E.Tensor.input('b', [4]))).toThrow(/layerNorm.*\[4\]/);
    expect(() => E.groupNorm(E.Tensor.input('x', [1, 6, 2, 2]), 4, E.Tensor.input('w', [6]), E.Tensor.input('b', [6]))).toThrow(/6 channels.*4 groups/);
  });
});
