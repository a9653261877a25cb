// Reverse-mode automatic differentiation over a traced graph. Each op's VJP is written in engine ops,
// so the gradients are themselves part of the graph and compile to ONNX with the forward pass.

import { dimEquals, shapeToString } from './dims.ts';
import { add } from './ops/elementwise.ts';
import { concat, pad, zerosLike } from './ops/shape.ts';
import type { Parameter } from './parameter.ts';
import { Tensor, isFloat } from './tensor.ts';

/** Ops reachable from `root`, producers before consumers. */
function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length) {
    const [t, expanded] = stack.pop()!;
    if (expanded) {
      order.push(t);
      continue;
    }
    if (seen.has(t)) continue;
    seen.add(t);
    stack.push([t, true]);
    if (t.origin.kind === 'op') for (const i of t.origin.node.inputs) if (!seen.has(i)) stack.push([i, false]);
  }
  return order;
}

/** Tensors on some path from one of `sources` to `root`: only these need gradients. */
function onPath(order: readonly Tensor[], sources: ReadonlySet<Tensor>): Set<Tensor> {
  const needed = new Set<Tensor>();
  for (const t of order) {
    if (sources.has(t) || (t.origin.kind === 'op' && t.origin.node.inputs.some((i) => needed.has(i)))) needed.add(t);
  }
  return needed;
}

/**
 * Gradients of the scalar `loss` with respect to each of `wrt` (zeros where `loss` does not depend
 * on one). `seed` replaces the implicit 1 when differentiating a non-scalar output (a VJP).
 */
export function grad(loss: Tensor, wrt: readonly Tensor[], seed?: Tensor): Tensor[] {
  if (!seed && loss.rank !== 0) throw new Error(`grad needs a scalar loss or an explicit seed, got ${loss}`);
  if (seed && !(seed.rank === loss.rank && seed.shape.every((d, i) => dimEquals(d, loss.shape[i])))) {
    throw new Error(`grad: seed ${shapeToString(seed.shape)} does not match output ${shapeToString(loss.shape)}`);
  }
  const order = topologicalOrder(loss);
  const needed = onPath(order, new Set(wrt));
  const grads = new Map<Tensor, Tensor>([[loss, seed ?? Tensor.scalar(1, loss.dtype)]]);
  for (let i = order.length - 1; i >= 0; i--) {
    const t = order[i];
    const g = grads.get(t);
    if (!g || t.origin.kind !== 'op' || !needed.has(t)) continue;
    const node = t.origin.node;
    if (!node.spec.vjp) throw new Error(`no gradient defined for ${node.spec.type}`);
    const inputGrads = node.spec.vjp(g, node, t);
    node.inputs.forEach((input, k) => {
      const gi = inputGrads[k];
      if (!gi || !needed.has(input) || !isFloat(input.dtype)) return;
      const previous = grads.get(input);
      grads.set(input, previous ? accumulate(previous, gi) : gi);
    });
  }
  return wrt.map((w) => grads.get(w) ?? zerosFor(w));
}

/**
 * a + b, two gradients of one tensor. Where each is one piece zero-padded along the same axis (a
 * slice's gradient) and the pieces are side by side, their sum is the pieces joined, padded once:
 * one Concat where two Pads and an Add wrote the whole tensor three times (the two halves of each
 * GEGLU projection, in every transformer block's backward).
 */
function accumulate(a: Tensor, b: Tensor): Tensor {
  const [pa, pb] = [padding(a), padding(b)];
  if (pa && pb && pa.axis === pb.axis) {
    const [first, second] = pa.before <= pb.before ? [pa, pb] : [pb, pa];
    const firstEnd = first.before + (first.piece.shape[first.axis] as number);
    if (firstEnd === second.before) {
      const pads = new Array<number>(2 * a.rank).fill(0);
      pads[first.axis] = first.before;
      pads[a.rank + first.axis] = second.after;
      return pad(concat([first.piece, second.piece], first.axis), pads);
    }
  }
  return add(a, b);
}

/** The piece and its zero padding, when `t` is a piece zero-padded along one axis by known amounts. */
function padding(t: Tensor): { piece: Tensor; axis: number; before: number; after: number } | undefined {
  if (t.origin.kind !== 'op' || t.origin.node.spec.type !== 'Pad') return undefined;
  const [piece, value] = t.origin.node.inputs;
  if (value.origin.kind !== 'const' || value.origin.data[0] !== 0) return undefined;
  const pads = t.origin.node.attrs.pads as unknown as readonly unknown[];
  const axes = piece.shape.map((_, axis) => axis).filter((axis) => pads[axis] !== 0 || pads[piece.rank + axis] !== 0);
  if (axes.length !== 1) return undefined;
  const [axis] = axes;
  const [before, after] = [pads[axis], pads[piece.rank + axis]];
  if (typeof before !== 'number' || typeof after !== 'number' || typeof piece.shape[axis] !== 'number') return undefined;
  return { piece, axis, before, after };
}

function zerosFor(t: Tensor): Tensor {
  if (!t.shape.every((d) => typeof d === 'number')) return zerosLike(t);
  const size = (t.shape as number[]).reduce((a, b) => a * b, 1);
  return Tensor.constant(new Float32Array(size), t.shape as number[]);
}

/**
 * Traces `fn` once and returns the loss with its gradients for each trainable parameter, ready
 * to compile as graph outputs (`{ loss, 'grad:<name>': … }`).
 */
export function valueAndGrad(fn: () => Tensor, params: readonly Parameter[]): { loss: Tensor; grads: Map<Parameter, Tensor> } {
  const loss = fn();
  const grads = grad(loss, params.map((p) => p.tensor));
  return { loss, grads: new Map(params.map((p, i) => [p, grads[i]])) };
}
