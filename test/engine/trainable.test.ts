// Which parameters are graph inputs is a compile() option (GraphSpec.trainable), not a flag on the
// parameter: the same traced model compiles to a graph with its weight baked in or fed at each run,
// the two are different graphs (different sessions), and int8 weights leave a trainable one float.

import { describe, expect, it } from 'vitest';
import onnxProto from 'onnx-proto';
import * as E from '../../src/engine/index.ts';
import { emitGraph } from '../../src/engine/emit.ts';
import { expectClose, rand } from './helpers.ts';

/** y = x · Wᵀ + b for x [2, 3]: W [4, 3], b [4] in memory. */
function layer() {
  const w = new E.Parameter('w', [4, 3]);
  const b = new E.Parameter('b', [4]);
  w.setValue(rand(12, 1));
  b.setValue(rand(4, 2));
  const x = E.Tensor.input('x', [2, 3]);
  return { w, b, x, y: E.linear(x, w.tensor, b.tensor) };
}

function expected(x: Float32Array, w: Float32Array, b: Float32Array): number[] {
  return Array.from({ length: 8 }, (_, k) => {
    const [i, o] = [Math.floor(k / 4), k % 4];
    return b[o] + [0, 1, 2].reduce((s, j) => s + x[i * 3 + j] * w[o * 3 + j], 0);
  });
}

describe('GraphSpec.trainable', () => {
  it('a trainable weight is an input fed its current value; the same weight compiled frozen keeps the value it had', async () => {
    const { w, b, x, y } = layer();
    const xv = rand(6, 3);
    const frozen = await E.compile({ inputs: [x], outputs: { y } });
    const trained = await E.compile({ inputs: [x], outputs: { y }, trainable: [w] });
    expect(frozen.graph.inputNames).toEqual(['x']);
    expect(trained.graph.inputNames).toEqual(['x', 'w']);
    expect(trained.graph.trainable).toEqual([w]);
    expect(trained.session).not.toBe(frozen.session); // the choice is part of the graph, hence of its cache key
    const before = new Float32Array(w.value());
    w.setValue(rand(12, 4));
    expectClose((await trained.run({ x: xv })).y.data as Float32Array, expected(xv, w.value(), b.value()), 1e-6, 1e-5);
    expectClose((await frozen.run({ x: xv })).y.data as Float32Array, expected(xv, before, b.value()), 1e-6, 1e-5);
    // A value given in the feeds replaces the current one for that run.
    expectClose((await trained.run({ x: xv, w: before })).y.data as Float32Array, expected(xv, before, b.value()), 1e-6, 1e-5);
    // Compiling the trainable graph again reuses its session.
    expect((await E.compile({ inputs: [x], outputs: { y }, trainable: [w] })).session).toBe(trained.session);
  });

  it('a trainable parameter the graph does not use is no input, and marking one leaves later graphs alone', async () => {
    const { w, b, x, y } = layer();
    const unused = new E.Parameter('unused', [5]);
    unused.setValue(rand(5, 5));
    const graph = await E.compile({ inputs: [x], outputs: { y }, trainable: [b, unused] });
    expect(graph.graph.inputNames).toEqual(['x', 'b']);
    const later = emitGraph({ inputs: [x], outputs: { y } });
    expect(later.inputNames).toEqual(['x']);
    expect(later.trainable).toEqual([]);
    expect(emitGraph({ inputs: [x], outputs: { y }, trainable: [w] }).inputNames).toEqual(['x', 'w']);
  });

  it('with int8 weights a trainable weight stays a float input while a frozen one is quantised', () => {
    const { w, x } = layer();
    const other = new E.Parameter('other', [2, 4]);
    other.setValue(rand(8, 6));
    const y = E.linear(E.linear(x, w.tensor), other.tensor); // [2, 4] → [2, 2]
    const ops = (trainable: E.Parameter[]) => {
      const emitted = emitGraph({ inputs: [x], outputs: { y }, trainable }, { weights: 'q8' });
      const { graph } = onnxProto.onnx.ModelProto.decode(emitted.bytes);
      return { names: emitted.inputNames, ops: graph!.node!.map((n) => n.opType) };
    };
    const both = ops([]);
    expect(both.names).toEqual(['x']);
    expect(both.ops.filter((op) => op === 'MatMulInteger')).toHaveLength(2);
    const one = ops([w]);
    expect(one.names).toEqual(['x', 'w']);
    expect(one.ops.filter((op) => op === 'MatMulInteger')).toHaveLength(1);
    expect(one.ops).toContain('MatMul');
  });
});

describe('EmittedGraph.frozenConvWeightBytes', () => {
  it('counts the float convolution weights fixed in the graph: not trainable ones, not int8 ones, each weight once', () => {
    const a = new E.Parameter('a', [8, 3, 3, 3]); // 216 values
    const b = new E.Parameter('b', [4, 8, 1, 1]); // 32 values
    a.setValue(rand(216, 1));
    b.setValue(rand(32, 2));
    const x = E.Tensor.input('x', [1, 3, 6, 6]);
    const h = E.conv2d(x, a.tensor, undefined, { padding: 1 });
    const y = E.add(E.conv2d(h, b.tensor), E.conv2d(h, b.tensor)); // b used twice
    const bytes = (trainable: E.Parameter[], weights?: 'q8') => emitGraph({ inputs: [x], outputs: { y }, trainable }, { weights }).frozenConvWeightBytes;
    expect(bytes([])).toBe(4 * (216 + 32));
    expect(bytes([a])).toBe(4 * 32);
    expect(bytes([], 'q8')).toBe(0);
  });
});
