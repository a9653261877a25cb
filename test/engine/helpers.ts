// Shared test helpers for the engine: feed-carrying inputs, "run this graph", a seeded random
// source, closeness checks and a central finite-difference gradient check.

import { expect } from 'vitest';
import { type CompiledGraph, type DType, type GraphSpec, type Parameter, Tensor, type TensorValue, type TypedData, compile, grad, mul, sum } from '../../src/engine/index.ts';

const fed = new WeakMap<Tensor, TensorValue>();

/** A graph input that carries the value it is fed with; `traced` is its (possibly symbolic) shape. */
export function input(name: string, shape: readonly number[], data: ArrayLike<number> | TypedData, options: { traced?: Tensor['shape']; dtype?: DType } = {}): Tensor {
  const dtype = options.dtype ?? 'float32';
  const t = Tensor.input(name, options.traced ?? shape, dtype);
  const typed = ArrayBuffer.isView(data) ? (data as TypedData) : dtype === 'int64' ? BigInt64Array.from(Array.from(data), (v) => BigInt(v)) : Float32Array.from(data);
  fed.set(t, { data: typed, shape });
  return t;
}

/** Every Tensor.input the outputs depend on, in first-seen order. */
export function graphInputs(outputs: readonly Tensor[]): Tensor[] {
  const found: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack = [...outputs];
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    if (t.origin.kind === 'input') found.push(t);
    if (t.origin.kind === 'op') stack.push(...t.origin.node.inputs);
  }
  return found.sort((a, b) => a.id - b.id);
}

export function feedsFor(inputs: readonly Tensor[]): Record<string, TensorValue> {
  const feeds: Record<string, TensorValue> = {};
  for (const t of inputs) {
    const value = fed.get(t);
    if (!value || t.origin.kind !== 'input') throw new Error(`no value fed for ${t}`);
    feeds[t.origin.name] = value;
  }
  return feeds;
}

/** Compiles the outputs over the inputs they reach and runs them once with the values those inputs carry. */
export async function evaluate(outputs: Record<string, Tensor>): Promise<Record<string, TensorValue>> {
  const inputs = graphInputs(Object.values(outputs));
  const graph = await compile({ inputs, outputs });
  return graph.run(feedsFor(inputs));
}

/** The single output `y`, as a plain number array with its shape. */
export async function run1(y: Tensor): Promise<{ data: number[]; shape: number[] }> {
  const r = (await evaluate({ y })).y;
  return { data: Array.from(r.data as ArrayLike<number>, Number), shape: [...r.shape] };
}

/** Deterministic uniform values in [lo, hi) (a small LCG: tests must not depend on Math.random). */
export function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = (seed * 2654435761 + 12345) >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((s >>> 8) / (1 << 24)) * (hi - lo);
  }
  return out;
}

export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol = 1e-5, rtol = 1e-5): void {
  expect(actual.length, 'length').toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = Number(actual[i]);
    const e = Number(expected[i]);
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      throw new Error(`element ${i}: got ${a}, expected ${e} (atol ${atol}, rtol ${rtol})\n  got      [${Array.from(actual).slice(0, 16).join(', ')}]\n  expected [${Array.from(expected).slice(0, 16).join(', ')}]`);
    }
  }
}

export interface GradArg {
  shape: number[];
  /** Values; default uniform in `range`. */
  data?: Float32Array;
  range?: [number, number];
}

export interface GradCheckOptions {
  eps?: number;
  atol?: number;
  rtol?: number;
  seed?: number;
  /** Coordinates checked per input; larger inputs are sampled evenly. */
  maxCoords?: number;
  /** Trainable parameters the op reads, checked like the inputs (fed by name, perturbed in turn). */
  params?: Parameter[];
  /** Kernel forms to compile the gradients with (compile's GraphSpec.kernels). */
  kernels?: GraphSpec['kernels'];
}

/**
 * Checks the VJP of `op` against central finite differences. The scalar is `sum(op(xs) * R)` with a
 * fixed random R, so every output element matters; the analytic gradient comes from `grad` in the
 * compiled graph, the numerical one from running the forward output at x ± eps and taking the dot
 * product with R in float64 (float32 sums would swamp the difference). Every input is checked:
 * element c passes when |analytic − numeric| ≤ atol + rtol · max(|analytic|, |numeric|).
 */
export async function gradCheck(op: (...xs: Tensor[]) => Tensor, args: GradArg[], options: GradCheckOptions = {}): Promise<void> {
  const { eps = 1e-2, atol = 1e-3, rtol = 2e-2, seed = 1, maxCoords = 96, params = [] } = options;
  const xs = args.map((a, i) => Tensor.input(`x${i}`, a.shape));
  const out = op(...xs);
  const outShape = out.shape as number[];
  const r = rand(outShape.reduce((p, q) => p * q, 1), seed * 17 + 7);
  const loss = sum(mul(out, Tensor.constant(r, outShape)));
  const grads = grad(loss, [...xs, ...params.map((p) => p.tensor)]);
  const outputs: Record<string, Tensor> = { out };
  grads.forEach((g, i) => (outputs[`g${i}`] = g));
  const graph: CompiledGraph = await compile({ inputs: xs, outputs, kernels: options.kernels, trainable: params });

  const names = [...args.map((_, i) => `x${i}`), ...params.map((p) => p.name)];
  const shapes = [...args.map((a) => a.shape), ...params.map((p) => [...p.shape])];
  const values = [
    ...args.map((a, i) => a.data ?? rand(a.shape.reduce((p, q) => p * q, 1), seed * 31 + i, ...(a.range ?? [-1, 1]))),
    ...params.map((p) => p.value().slice()),
  ];
  const feeds = (vals: Float32Array[]) => Object.fromEntries(vals.map((v, i) => [names[i], { data: v, shape: shapes[i] }]));
  const objective = async (vals: Float32Array[]) => {
    const y = (await graph.run(feeds(vals))).out.data as Float32Array;
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i] * r[i];
    return s;
  };
  const analytic = await graph.run(feeds(values));
  for (let k = 0; k < values.length; k++) {
    const g = analytic[`g${k}`];
    expect([...g.shape], `gradient shape of ${names[k]}`).toEqual(shapes[k]);
    const n = values[k].length;
    const coords = n <= maxCoords ? [...Array(n).keys()] : [...Array(maxCoords).keys()].map((i) => Math.floor((i * n) / maxCoords));
    for (const c of coords) {
      const plus = values.map((v) => v.slice());
      const minus = values.map((v) => v.slice());
      plus[k][c] += eps;
      minus[k][c] -= eps;
      const numeric = ((await objective(plus)) - (await objective(minus))) / (2 * eps);
      const a = (g.data as Float32Array)[c];
      if (!(Math.abs(a - numeric) <= atol + rtol * Math.max(Math.abs(a), Math.abs(numeric)))) {
        throw new Error(`${names[k]} ${JSON.stringify(shapes[k])} element ${c}: analytic ${a}, finite difference ${numeric} (eps ${eps}, atol ${atol}, rtol ${rtol})`);
      }
    }
  }
}
