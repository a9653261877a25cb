// Attention's P kept from the forward for the backward (KernelForms.keptBytes) against P recomputed
// in the backward: the same gradients, and the budget deciding which layers keep theirs. The
// finite-difference checks of both paths are in grad.test.ts.

import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { emitGraph } from '../../src/engine/emit.ts';
import * as E from '../../src/engine/index.ts';
import { expectClose, rand } from './helpers.ts';

/** Two attention layers in a row (cross-attention to 5 tokens, then self-attention) and a weighted-sum loss. */
function twoLayers(batch: E.Dim, lq: number) {
  const x = E.Tensor.input('x', [batch, lq, 6]);
  const ctx = E.Tensor.input('ctx', [batch, 5, 6]);
  const weights = E.Tensor.input('w', [batch, lq, 6]);
  const cross = E.attention(x, ctx, ctx, 2); // P [B, 2, lq, 5]
  const h = E.add(E.tanh(cross), x);
  const self = E.attention(h, E.mul(h, 0.5), h, 3, 0.6); // P [B, 3, lq, lq]
  const loss = E.sum(E.mul(self, weights));
  const grads = E.grad(loss, [x, ctx]);
  return { inputs: [x, ctx, weights], outputs: { loss, gx: grads[0], gctx: grads[1] } };
}

function opTypes(spec: E.GraphSpec): { ops: string[]; opset: number } {
  const model = onnxProto.onnx.ModelProto.decode(emitGraph(spec).bytes);
  return { ops: model.graph!.node!.map((n) => n.opType!), opset: Number(String(model.opsetImport!.find((o) => !o.domain)!.version)) };
}

const count = (ops: string[], type: string) => ops.filter((o) => o === type).length;

describe('attention probabilities kept from the forward', () => {
  for (const [form, keptAttentionForward] of [['dense', 'onnx-attention'], ['low-rank', 'onnx-attention'], ['low-rank', 'plain']] as const) {
    it(`gives the gradients of the recomputed path (${form} score gradient, ${keptAttentionForward} forward)`, async () => {
      E.attentionGradForm.form = form;
      try {
        const feeds = {
          x: { data: rand(2 * 7 * 6, 1, -1.5, 1.5), shape: [2, 7, 6] },
          ctx: { data: rand(2 * 5 * 6, 2, -1.5, 1.5), shape: [2, 5, 6] },
          w: { data: rand(2 * 7 * 6, 3), shape: [2, 7, 6] },
        };
        const results = [];
        for (const keptBytes of [0, 2 ** 20]) {
          const graph = await E.compile({ ...twoLayers(2, 7), kernels: { keptBytes, keptAttentionForward } });
          results.push(await graph.run(feeds));
        }
        const [recomputed, kept] = results;
        for (const name of ['loss', 'gx', 'gctx']) expectClose(kept[name].data as Float32Array, recomputed[name].data as Float32Array, 1e-5, 1e-4);
        // Not a vacuous comparison: the gradients are not zero.
        expect(Math.max(...(kept.gctx.data as Float32Array).map(Math.abs))).toBeGreaterThan(1e-2);
      } finally {
        E.attentionGradForm.form = 'auto';
      }
    });
  }

  it('keeps the smallest P first within the budget and recomputes the rest', () => {
    const cross = 4 * 2 * 2 * 7 * 5; // bytes of the first layer's P
    const self = 4 * 2 * 3 * 7 * 7;
    // Nothing kept: both forwards are the fused MultiHeadAttention, both backwards recompute P.
    const none = opTypes({ ...twoLayers(2, 7), kernels: { keptBytes: 0 } });
    expect([count(none.ops, 'Attention'), count(none.ops, 'MultiHeadAttention'), count(none.ops, 'Softmax'), none.opset]).toEqual([0, 2, 2, 21]);
    // Room for the smaller (cross-attention) P only.
    const one = opTypes({ ...twoLayers(2, 7), kernels: { keptBytes: cross + self - 1 } });
    expect([count(one.ops, 'Attention'), count(one.ops, 'MultiHeadAttention'), count(one.ops, 'Softmax'), one.opset]).toEqual([1, 1, 1, 23]);
    const all = opTypes({ ...twoLayers(2, 7), kernels: { keptBytes: cross + self } });
    expect([count(all.ops, 'Attention'), count(all.ops, 'MultiHeadAttention'), count(all.ops, 'Softmax')]).toEqual([2, 0, 0]);
  });

  it('keeps nothing where no gradient reads P or its size is symbolic', () => {
    const x = E.Tensor.input('x', [2, 7, 6]);
    const inference = opTypes({ inputs: [x], outputs: { y: E.attention(x, x, x, 2) }, kernels: { keptBytes: 2 ** 30 } });
    expect([count(inference.ops, 'Attention'), inference.opset]).toEqual([0, 21]);
    const symbolic = opTypes({ ...twoLayers(E.sym('batch'), 7), kernels: { keptBytes: 2 ** 30 } });
    expect(count(symbolic.ops, 'Attention')).toBe(0);
  });
});
