// Every op with a VJP against central finite differences (see gradCheck in helpers.ts for the
// scalar used and the tolerances: eps 1e-2, pass when |a − n| ≤ 1e-3 + 2e-2·max(|a|, |n|)). Inputs
// of non-smooth ops (relu, abs, max, maximum) are kept more than eps away from their kinks.

import { afterEach, describe, expect, it } from 'vitest';
import onnxProto from 'onnx-proto';
import * as E from '../../src/engine/index.ts';
import { emitGraph } from '../../src/engine/emit.ts';
import { type GradArg, expectClose, gradCheck, rand } from './helpers.ts';

const fusedDefaults = { ...E.fusedKernels };
afterEach(() => Object.assign(E.fusedKernels, fusedDefaults));

const arg = (shape: number[], range?: [number, number]): GradArg => ({ shape, range });

/** Values in ±[0.1, 1] (away from 0, where relu/abs/sign have kinks). */
function awayFromZero(n: number, seed: number): Float32Array {
  return rand(n, seed).map((v) => (v < 0 ? v - 0.1 : v + 0.1));
}

/** Distinct values 0.1 apart in shuffled order: no two within eps, so max/argmax are stable. */
function spaced(n: number, seed: number): Float32Array {
  const order = [...rand(n, seed)].map((v, i) => [v, i]).sort((a, b) => a[0] - b[0]);
  const out = new Float32Array(n);
  order.forEach(([, i], rank) => (out[i] = rank * 0.1 - n * 0.05));
  return out;
}

describe('elementwise', () => {
  it('add, sub, mul, div with broadcasting (both inputs)', async () => {
    await gradCheck(E.add, [arg([2, 3]), arg([3])]);
    await gradCheck(E.sub, [arg([2, 1]), arg([2, 3])]);
    await gradCheck(E.mul, [arg([2, 3]), arg([2, 1])]);
    await gradCheck(E.mul, [arg([4, 1, 3]), arg([2, 1])]);
    await gradCheck(E.div, [arg([2, 3]), arg([3], [0.5, 2])]);
    await gradCheck(E.div, [arg([1, 3]), arg([2, 3], [-2, -0.5])]);
  });

  it('pow (gradient to the base; exponents are constants)', async () => {
    await gradCheck((x) => E.pow(x, 3), [arg([2, 3])]);
    await gradCheck((x) => E.pow(x, 0.5), [arg([5], [0.5, 2])]);
    await gradCheck((x) => E.pow(x, E.Tensor.constant([1, 2, -1.5], [3])), [arg([2, 3], [0.5, 2])]);
  });

  it('smooth unary ops', async () => {
    for (const f of [E.neg, E.exp, E.erf, E.tanh, E.sigmoid, E.sin, E.cos]) await gradCheck(f, [arg([2, 4], [-2, 2])]);
    for (const f of [E.log, E.sqrt, E.reciprocal]) await gradCheck(f, [arg([2, 4], [0.5, 2])]);
  });

  it('relu and abs away from zero', async () => {
    const data = awayFromZero(12, 3);
    await gradCheck(E.relu, [{ shape: [3, 4], data }]);
    await gradCheck(E.abs, [{ shape: [3, 4], data }]);
  });

  it('maximum sends the gradient to the larger operand, with broadcasting', async () => {
    const a = rand(6, 4);
    const b = Float32Array.of(0.2, -0.3, 0.55);
    for (let i = 0; i < 6; i++) if (Math.abs(a[i] - b[i % 3]) < 0.05) a[i] += 0.1;
    await gradCheck(E.maximum, [{ shape: [2, 3], data: a }, { shape: [3], data: b }]);
  });

  it('where sends the gradient to the chosen branch', async () => {
    const cond = E.Tensor.constant([1, 0, 1], [3], 'bool');
    await gradCheck((a, b) => E.where(cond, a, b), [arg([2, 3]), arg([2, 1])]);
    await gradCheck((a) => E.where(E.greater(a, 0), a, E.mul(a, 0.1)), [{ shape: [8], data: awayFromZero(8, 5) }]);
  });

  it('activations composed of primitives', async () => {
    for (const f of [E.silu, E.gelu, E.geluTanh, E.quickGelu]) await gradCheck(f, [arg([2, 5], [-3, 3])]);
  });

  it('cast to float32 is the identity for gradients', async () => {
    await gradCheck((x) => E.mul(E.cast(x, 'float32'), x), [arg([4])]);
  });
});

describe('reductions', () => {
  it('sum and mean over axes, with and without keepDims', async () => {
    await gradCheck((x) => E.sum(x), [arg([2, 3, 4])]);
    await gradCheck((x) => E.sum(x, [0, 2]), [arg([2, 3, 4])]);
    await gradCheck((x) => E.sum(x, 1, true), [arg([2, 3, 4])]);
    await gradCheck((x) => E.mean(x, -1), [arg([2, 3, 4])]);
    await gradCheck((x) => E.mean(x, [0, 1], true), [arg([2, 3, 4])]);
  });

  it('max over axes', async () => {
    const data = spaced(24, 6);
    await gradCheck((x) => E.max(x), [{ shape: [2, 3, 4], data }]);
    await gradCheck((x) => E.max(x, 1), [{ shape: [2, 3, 4], data }]);
    await gradCheck((x) => E.max(x, [0, 2], true), [{ shape: [2, 3, 4], data }]);
  });

  it('max shares the gradient equally between ties', async () => {
    const x = E.Tensor.input('x', [4]);
    const [g] = E.grad(E.max(x), [x]);
    const r = await (await E.compile({ inputs: [x], outputs: { g } })).run({ x: Float32Array.of(1, 3, 3, 2) });
    expectClose(r.g.data as Float32Array, [0, 0.5, 0.5, 0]);
  });
});

describe('shape ops', () => {
  it('reshape, transpose, unsqueeze, squeeze', async () => {
    await gradCheck((x) => E.mul(E.reshape(x, [3, -1]), E.reshape(x, [3, 8])), [arg([2, 3, 4])]);
    await gradCheck((x) => E.transpose(x, [2, 0, 1]), [arg([2, 3, 4])]);
    await gradCheck((x) => E.unsqueeze(x, [0, 2]), [arg([2, 3])]);
    await gradCheck((x) => E.squeeze(x, 1), [arg([2, 1, 3])]);
  });

  it('slice, including negative and past-the-end bounds', async () => {
    await gradCheck((x) => E.slice(x, 1, 1, 3), [arg([2, 4, 3])]);
    await gradCheck((x) => E.slice(x, -1, -2), [arg([2, 4, 3])]);
    await gradCheck((x) => E.slice(x, 0, 1, -1), [arg([5, 2])]);
    await gradCheck((x) => E.slice(x, 0, 2, 10), [arg([5, 2])]);
    // An empty slice (end before start) passes a zero gradient of the right shape.
    const x = E.Tensor.input('x', [6]);
    const empty = E.slice(x, 0, 4, 2);
    expect(empty.shape).toEqual([0]);
    const [g] = E.grad(E.add(E.sum(E.mul(empty, empty)), E.sum(x)), [x]);
    const r = await (await E.compile({ inputs: [x], outputs: { g } })).run({ x: rand(6, 1) });
    expectClose(r.g.data as Float32Array, new Array(6).fill(1));
  });

  it('concat (each input), split and chunk', async () => {
    await gradCheck((a, b, c) => E.concat([a, b, c], 1), [arg([2, 1, 3]), arg([2, 2, 3]), arg([2, 3, 3])]);
    await gradCheck((a, b) => E.concat([a, b], -1), [arg([2, 2]), arg([2, 3])]);
    await gradCheck((x) => {
      const [p, q] = E.split(x, 1, [1, 3]);
      return E.mul(E.expand(p, [2, 3]), E.slice(q, 1, 0, 3));
    }, [arg([2, 4])]);
    await gradCheck((x) => {
      const [p, q] = E.chunk(x, 2, 0);
      return E.mul(p, q);
    }, [arg([4, 3])]);
  });

  it('the gradients of side-by-side slices are joined by one Concat, not summed from zero-padded copies', async () => {
    const x = E.Tensor.input('x', [2, 3, 8]);
    const [value, gate] = E.chunk(x, 2, -1); // GEGLU's split
    const [gx] = E.grad(E.sum(E.mul(value, gate)), [x]);
    const { graph } = onnxProto.onnx.ModelProto.decode(emitGraph({ inputs: [x], outputs: { gx } }).bytes);
    const ops = graph!.node!.map((n) => n.opType);
    expect(ops).toContain('Concat');
    expect(ops).not.toContain('Pad');
    expect(ops).not.toContain('Add');
    const data = rand(48, 70);
    const got = (await (await E.compile({ inputs: [x], outputs: { gx } })).run({ x: { data, shape: [2, 3, 8] } })).gx.data as Float32Array;
    const expected = new Float32Array(48);
    for (let r = 0; r < 6; r++) {
      for (let i = 0; i < 4; i++) {
        const [v, g] = [data[r * 8 + i], data[r * 8 + 4 + i]];
        expected[r * 8 + i] = g; // ∂(v·g)/∂v
        expected[r * 8 + 4 + i] = v; // ∂(v·g)/∂g
      }
    }
    expectClose(got, expected, 1e-6, 1e-6);
  });

  it('expand and expandAs sum the gradient back', async () => {
    await gradCheck((x) => E.expand(x, [2, 3, 4]), [arg([3, 1])]);
    await gradCheck((x, like) => E.mul(E.expandAs(x, like), like), [arg([1, 4]), arg([3, 4])]);
  });

  it('gather: embedding gradient accumulates repeated indices', async () => {
    const ids = E.Tensor.constant([1, 3, 1, 1, 0, 3], [2, 3], 'int64');
    await gradCheck((table) => E.gather(table, ids), [arg([5, 4])]);
    await gradCheck((table) => E.gather(table, E.Tensor.constant([4, 4, 2], [3], 'int32')), [arg([5, 3])]);
    // Directly: row 1 is used three times, row 3 twice, rows 2 and 4 never.
    const table = E.Tensor.input('table', [5, 2]);
    const [g] = E.grad(E.sum(E.gather(table, ids)), [table]);
    const r = await (await E.compile({ inputs: [table], outputs: { g } })).run({ table: new Float32Array(10) });
    expectClose(r.g.data as Float32Array, [1, 1, 3, 3, 0, 0, 2, 2, 0, 0]);
  });

  it('pad (constant value) and zerosLike', async () => {
    await gradCheck((x) => E.pad(x, [1, 0, 0, 2], 0.5), [arg([2, 3])]);
    await gradCheck((x) => E.pad(x, [0, 0, 1, 1, 0, 0, 2, 1]), [arg([1, 2, 2, 3])]);
    // zerosLike on the path carries no gradient but must not stop it.
    await gradCheck((x) => E.add(E.mul(x, x), E.zerosLike(x)), [arg([2, 3])]);
  });

  it('upsampleNearest2x and sumPool2x', async () => {
    await gradCheck(E.upsampleNearest2x, [arg([1, 2, 3, 2])]);
    await gradCheck(E.sumPool2x, [arg([2, 1, 4, 6])]);
  });

  it('resizeNearestLike: the gradient of an exact 2×, and a clear refusal otherwise', async () => {
    const like = E.Tensor.constant(new Float32Array(2 * 6 * 4), [1, 2, 6, 4]);
    await gradCheck((x: E.Tensor) => E.resizeNearestLike(x, like), [arg([1, 2, 3, 2])]);
    const odd = E.Tensor.constant(new Float32Array(2 * 5 * 4), [1, 2, 5, 4]);
    const x = E.Tensor.input('x', [1, 2, 3, 2]);
    expect(() => E.grad(E.sum(E.resizeNearestLike(x, odd)), [x])).toThrow(/no gradient for .* resized to .*only for an exact 2×/);
  });
});

describe('linear algebra', () => {
  it('matmul: 2-D, batched, broadcast batch axes', async () => {
    await gradCheck(E.matmul, [arg([3, 4]), arg([4, 2])]);
    await gradCheck(E.matmul, [arg([2, 3, 4]), arg([2, 4, 2])]);
    await gradCheck(E.matmul, [arg([2, 3, 4]), arg([4, 2])]);
    await gradCheck(E.matmul, [arg([1, 3, 4]), arg([2, 1, 4, 2])]);
  });

  it('gemm with and without transB, with a bias', async () => {
    await gradCheck((a, b, c) => E.gemm(a, b, c, true), [arg([3, 4]), arg([2, 4]), arg([2])]);
    await gradCheck((a, b, c) => E.gemm(a, b, c), [arg([3, 4]), arg([4, 2]), arg([3, 2])]);
    await gradCheck((a, b) => E.gemm(a, b), [arg([3, 4]), arg([4, 2])]);
    await gradCheck((x, w, b) => E.linear(x, w, b), [arg([2, 3, 4]), arg([5, 4]), arg([5])]);
  });

  const convCases: { name: string; x: number[]; w: number[]; opts: E.ConvOptions; bias?: boolean }[] = [
    { name: '3×3 with bias', x: [2, 2, 5, 5], w: [3, 2, 3, 3], opts: { padding: 1 }, bias: true },
    { name: 'stride 2 + padding + dilation + groups', x: [2, 4, 7, 7], w: [4, 2, 3, 3], opts: { stride: 2, padding: 2, dilation: 2, groups: 2 }, bias: true },
    { name: 'stride 2 leaving a remainder (odd size, no padding)', x: [1, 2, 7, 6], w: [2, 2, 3, 3], opts: { stride: 2 } },
    { name: 'asymmetric padding, stride [2, 1]', x: [1, 1, 5, 4], w: [2, 1, 2, 3], opts: { padding: [1, 0, 0, 2], stride: [2, 1] } },
    { name: 'depthwise 1×1 stride 2', x: [2, 3, 4, 4], w: [3, 1, 1, 1], opts: { groups: 3, stride: 2 } },
  ];
  for (const c of convCases) {
    it(`conv2d ${c.name}`, async () => {
      const args = [arg(c.x), arg(c.w)];
      if (c.bias) args.push(arg([c.w[0]]));
      await gradCheck((x, w, b) => E.conv2d(x, w, b, c.opts), args);
    });
  }

  // The default input gradient is a plain convolution with the flipped kernel where it applies
  // (stride 1); check the transposed-convolution form too, which every other case uses.
  for (const c of [convCases[0], convCases[3], { name: 'dilation 2, asymmetric padding', x: [1, 2, 6, 5], w: [3, 2, 3, 2], opts: { padding: [2, 1, 1, 0], dilation: 2 } as E.ConvOptions }]) {
    it(`conv2d ${c.name}: input gradient as a ConvTranspose`, async () => {
      await gradCheck((x, w) => E.conv2d(x, w, undefined, c.opts), [arg(c.x), arg(c.w)], { kernels: { convInputGrad: 'convTranspose' } });
    });
  }

  // The input gradient's form is chosen at emission; its own gradient (a second derivative) is the same in both.
  for (const convInputGrad of ['conv', 'convTranspose'] as const) {
    it(`the conv input gradient (${convInputGrad} form) has a gradient in g and W`, async () => {
      const x = E.Tensor.constant(rand(2 * 5 * 6, 3), [1, 2, 5, 6]);
      const inputGrad = (g: E.Tensor, w: E.Tensor) => E.grad(E.conv2d(x, w, undefined, { padding: 1 }), [x], g)[0];
      await gradCheck(inputGrad, [arg([1, 3, 5, 6]), arg([3, 2, 3, 3])], { kernels: { convInputGrad } });
    });
  }

  const convTransposeCases: { name: string; x: number[]; w: number[]; opts: E.ConvOptions & { outputPadding?: [number, number] } }[] = [
    { name: 'stride 2, kernel 4, padding 1', x: [2, 2, 3, 3], w: [2, 3, 4, 4], opts: { stride: 2, padding: 1 } },
    { name: 'stride 2 with output padding', x: [1, 2, 3, 2], w: [2, 1, 3, 3], opts: { stride: 2, padding: 1, outputPadding: [1, 1] } },
    { name: 'dilation 2, groups 2', x: [1, 4, 3, 3], w: [4, 2, 2, 2], opts: { dilation: 2, groups: 2 } },
  ];
  for (const c of convTransposeCases) {
    it(`convTranspose2d ${c.name}`, async () => {
      const cout = c.w[1] * (c.opts.groups ?? 1);
      await gradCheck((x, w, b) => E.convTranspose2d(x, w, b, c.opts), [arg(c.x), arg(c.w), arg([cout])]);
    });
  }
});

describe('nn ops', () => {
  it('softmax and logSoftmax', async () => {
    await gradCheck((x) => E.softmax(x), [arg([2, 3, 4], [-2, 2])]);
    await gradCheck((x) => E.softmax(x, 1), [arg([2, 3, 4], [-2, 2])]);
    await gradCheck((x) => E.logSoftmax(x), [arg([3, 5], [-2, 2])]);
    await gradCheck((x) => E.logSoftmax(x, 0), [arg([3, 5], [-2, 2])]);
  });

  for (const fused of [true, false]) {
    const mode = fused ? 'fused forward' : 'plain-op forward';

    it(`layerNorm (${mode}): input, weight, bias`, async () => {
      E.fusedKernels.layerNorm = fused;
      await gradCheck((x, w, b) => E.layerNorm(x, w, b), [arg([2, 3, 6], [-2, 2]), arg([6], [0.5, 1.5]), arg([6])]);
    });

    it(`groupNorm (${mode}): input, weight, bias`, async () => {
      E.fusedKernels.groupNorm = fused;
      await gradCheck((x, w, b) => E.groupNorm(x, 2, w, b), [arg([2, 4, 3, 2], [-2, 2]), arg([4], [0.5, 1.5]), arg([4])]);
      await gradCheck((x, w, b) => E.groupNorm(x, 3, w, b, 1e-3), [arg([2, 6, 5], [-2, 2]), arg([6], [0.5, 1.5]), arg([6])]);
    });

    // Both forms of the score gradient (dense and low-rank, see attentionGradForm) at each forward
    // form, with P recomputed in the backward (no budget to keep it).
    for (const form of ['dense', 'low-rank'] as const) {
      it(`attention (${mode}, ${form} gradient, P recomputed): q, k, v with different lengths`, async () => {
        E.fusedKernels.attention = fused;
        await attentionGradChecks(form, { keptBytes: 0 });
      });
    }
  }

  // P kept from the forward, which is then ONNX's Attention returning P or plain ops sharing it.
  for (const keptAttentionForward of ['onnx-attention', 'plain'] as const) {
    for (const form of ['dense', 'low-rank'] as const) {
      it(`attention (${form} gradient, P kept from a ${keptAttentionForward} forward): q, k, v with different lengths`, async () => {
        await attentionGradChecks(form, { keptBytes: 2 ** 20, keptAttentionForward });
      });
    }
  }
});

async function attentionGradChecks(form: 'dense' | 'low-rank', kernels: Partial<E.KernelForms>): Promise<void> {
  E.attentionGradForm.form = form;
  try {
    await gradCheck((q, k, v) => E.attention(q, k, v, 2), [arg([2, 3, 4], [-1.5, 1.5]), arg([2, 5, 4], [-1.5, 1.5]), arg([2, 5, 4])], { kernels });
    await gradCheck((x) => E.attention(x, x, x, 1, 0.7), [arg([1, 4, 3], [-1.5, 1.5])], { kernels });
  } finally {
    E.attentionGradForm.form = 'auto';
  }
}

describe('composites and parameters', () => {
  it('Linear → GELU → LayerNorm through trainable parameters', async () => {
    const rng = new E.Generator(7);
    const lin = new E.Linear('proj', 4, 6);
    const norm = new E.LayerNorm('norm', 6);
    lin.init(rng);
    norm.init();
    norm.weight.setValue(rand(6, 8, 0.5, 1.5));
    norm.bias.setValue(rand(6, 9));
    const params = [...lin.parameters(), ...norm.parameters()];
    await gradCheck((x) => norm.forward(E.gelu(lin.forward(x))), [arg([2, 3, 4], [-2, 2])], { params });
  });

  it('conv → SiLU → conv stride 2 → GroupNorm through trainable parameters', async () => {
    const rng = new E.Generator(11);
    const c1 = new E.Conv2d('c1', 2, 4, 3, { padding: 1 });
    const c2 = new E.Conv2d('c2', 4, 4, 3, { stride: 2, padding: 1 });
    const gn = new E.GroupNorm('gn', 2, 4);
    for (const m of [c1, c2, gn]) m.init(rng);
    const params = [c1, c2, gn].flatMap((m) => m.parameters());
    await gradCheck((x) => gn.forward(c2.forward(E.silu(c1.forward(x)))), [arg([2, 2, 6, 6])], { params, maxCoords: 48 });
  });

  it('a loss that does not depend on an input gives it zeros', async () => {
    const x = E.Tensor.input('x', [2]);
    const y = E.Tensor.input('y', [3]);
    const [gx, gy] = E.grad(E.sum(E.mul(x, x)), [x, y]);
    const r = await (await E.compile({ inputs: [x, y], outputs: { gx, gy } })).run({ x: Float32Array.of(1, 2), y: new Float32Array(3) });
    expectClose(r.gx.data as Float32Array, [2, 4]);
    expectClose(r.gy.data as Float32Array, [0, 0, 0]);
  });

  it('grad refuses a non-scalar loss without a seed, and applies a seed', async () => {
    const x = E.Tensor.input('x', [3]);
    expect(() => E.grad(E.mul(x, x), [x])).toThrow(/scalar loss/);
    const [g] = E.grad(E.mul(x, x), [x], E.Tensor.constant([1, 10, 100], [3]));
    const r = await (await E.compile({ inputs: [x], outputs: { g } })).run({ x: Float32Array.of(1, 2, 3) });
    expectClose(r.g.data as Float32Array, [2, 40, 600]);
  });
});

describe('gradients with a symbolic batch', () => {
  /** mean over everything of silu(conv(x)) · linear: weight gradients at any batch size. */
  function lossOf(x: E.Tensor, conv: E.Conv2d, lin: E.Linear): E.Tensor {
    const h = E.silu(conv.forward(x)); // [B, 3, 2, 2]
    const flat = E.reshape(h, [x.shape[0], 12]);
    return E.mean(E.mul(lin.forward(flat), lin.forward(flat)));
  }

  it('matches the same graph traced at a fixed batch size', async () => {
    const rng = new E.Generator(3);
    const conv = new E.Conv2d('conv', 2, 3, 3, { stride: 2, padding: 1 });
    const lin = new E.Linear('lin', 12, 2);
    conv.init(rng);
    lin.init(rng);
    const params = [...conv.parameters(), ...lin.parameters()];
    const build = async (batch: E.Dim) => {
      const x = E.Tensor.input('x', [batch, 2, 4, 4]);
      const loss = lossOf(x, conv, lin);
      const grads = E.grad(loss, [x, ...params.map((p) => p.tensor)]);
      return E.compile({ inputs: [x], outputs: { loss, ...Object.fromEntries(grads.map((g, i) => [`g${i}`, g])) }, trainable: params });
    };
    const symbolic = await build(E.sym('B'));
    for (const b of [2, 3]) {
      const x = { data: rand(b * 32, b), shape: [b, 2, 4, 4] };
      const fixed = await (await build(b)).run({ x });
      const r = await symbolic.run({ x });
      for (const name of Object.keys(fixed)) expectClose(r[name].data as Float32Array, fixed[name].data as Float32Array, 1e-6, 1e-5);
    }
  });
});

describe('gradients with symbolic spatial sizes', () => {
  /** conv/2 → GroupNorm → attention over tokens → convTranspose×2: the input gradient at any size. */
  function inputGradient(x: E.Tensor): E.Tensor {
    const w = E.Tensor.constant(rand(4 * 2 * 9, 1, -0.5, 0.5), [4, 2, 3, 3]);
    const wt = E.Tensor.constant(rand(4 * 2 * 16, 2, -0.5, 0.5), [4, 2, 4, 4]);
    const h = E.groupNorm(E.conv2d(x, w, undefined, { stride: 2, padding: 1 }), 2, E.Tensor.constant([1, 2, 3, 4], [4]), E.Tensor.constant([0, 0, 0, 0], [4]));
    const tokens = E.transpose(E.reshape(h, [x.shape[0], 4, -1]), [0, 2, 1]);
    const attended = E.reshape(E.transpose(E.attention(tokens, tokens, tokens, 2), [0, 2, 1]), h.shape);
    const y = E.convTranspose2d(E.silu(attended), wt, undefined, { stride: 2, padding: 1 }); // [B, 2, H, W]
    return E.grad(E.mean(E.mul(y, x)), [x])[0];
  }

  it('the input gradient through convolutions matches the fixed-size trace', async () => {
    const symbolic = E.Tensor.input('x', [E.sym('B'), 2, E.sym('H'), E.sym('W')]);
    const graph = await E.compile({ inputs: [symbolic], outputs: { g: inputGradient(symbolic) } });
    for (const [b, h, w] of [[1, 4, 6], [2, 6, 2]]) {
      const x = { data: rand(b * 2 * h * w, h), shape: [b, 2, h, w] };
      const fixed = E.Tensor.input('x', x.shape);
      const expected = await (await E.compile({ inputs: [fixed], outputs: { g: inputGradient(fixed) } })).run({ x });
      const r = await graph.run({ x });
      expect(r.g.shape).toEqual(x.shape);
      expectClose(r.g.data as Float32Array, expected.g.data as Float32Array, 1e-6, 1e-5);
    }
  });

  for (const form of ['im2col', 'conv'] as const) {
    it(`conv weight gradients (${form} form) at a symbolic resolution equal those traced at fixed sizes`, async () => {
      {
        const options = { padding: [1, 0, 2, 1] as [number, number, number, number], stride: 2, dilation: [1, 2] as [number, number] };
        const grads = async (shape: E.Dim[], h: number, w: number) => {
          const x = E.Tensor.input('x', shape);
          const wt = E.Tensor.input('w', [3, 2, 3, 3]);
          const y = E.conv2d(x, wt, undefined, options);
          const r = E.Tensor.input('r', y.shape);
          const loss = E.sum(E.mul(y, r));
          const [gw] = E.grad(loss, [wt]);
          const graph = await E.compile({ inputs: [x, wt, r], outputs: { gw }, kernels: { convWeightGrad: form } });
          const oh = E.convOutDim(h, 3, 2, 3, 1) as number;
          const ow = E.convOutDim(w, 3, 2, 1, 2) as number;
          const feeds = { x: { data: rand(2 * h * w, 3), shape: [1, 2, h, w] }, w: { data: rand(54, 4), shape: [3, 2, 3, 3] }, r: { data: rand(3 * oh * ow, 5), shape: [1, 3, oh, ow] } };
          return (await graph.run(feeds)).gw.data as Float32Array;
        };
        for (const [h, w] of [[8, 10], [12, 6]]) {
          const symbolic = await grads([1, 2, E.sym('H'), E.sym('W')], h, w);
          const fixed = await grads([1, 2, h, w], h, w);
          expectClose(symbolic, fixed, 1e-5, 1e-5);
        }
      }
    });
  }

  it('the gather form: convolutions of one geometry share one index initializer', () => {
    const x = E.Tensor.input('x', [2, 3, 6, 6]);
    const [w1, w2, w3] = [E.Tensor.input('w1', [3, 3, 3, 3]), E.Tensor.input('w2', [3, 3, 3, 3]), E.Tensor.input('w3', [3, 3, 3, 3])];
    const h = E.conv2d(E.conv2d(x, w1, undefined, { padding: 1 }), w2, undefined, { padding: 1 }); // same geometry twice
    const y = E.conv2d(h, w3, undefined, { padding: 1, stride: 2 }); // another
    const grads = E.grad(E.sum(y), [w1, w2, w3]);
    const { graph } = onnxProto.onnx.ModelProto.decode(emitGraph({ inputs: [x, w1, w2, w3], outputs: Object.fromEntries(grads.map((g, i) => [`g${i}`, g])), kernels: { convWeightGrad: 'gather' } }).bytes);
    expect(graph!.node!.filter((n) => n.opType === 'Gather')).toHaveLength(3);
    expect(graph!.initializer!.filter((t) => t.name!.startsWith('patch_rows'))).toHaveLength(2);
  });

  it('conv weight gradients sum over the batch alike in every form (im2col and gather fold the batch into one product)', async () => {
    const options = { padding: [1, 2, 0, 1] as [number, number, number, number], stride: [2, 1] as [number, number], dilation: [1, 2] as [number, number] };
    const [n, h, w] = [3, 9, 7];
    const x = E.Tensor.input('x', [n, 4, h, w]);
    const wt = E.Tensor.input('w', [5, 4, 3, 2]);
    const y = E.conv2d(x, wt, undefined, options);
    const r = E.Tensor.input('r', y.shape);
    const [gw] = E.grad(E.sum(E.mul(y, r)), [wt]);
    const feeds = { x: { data: rand(n * 4 * h * w, 6), shape: [n, 4, h, w] }, w: { data: rand(120, 7), shape: [5, 4, 3, 2] }, r: { data: rand((y.shape as number[]).reduce((a, b) => a * b, 1), 8), shape: y.shape as number[] } };
    const run = async (form: 'im2col' | 'gather' | 'conv') => (await (await E.compile({ inputs: [x, wt, r], outputs: { gw }, kernels: { convWeightGrad: form } })).run(feeds)).gw.data as Float32Array;
    const im2col = await run('im2col');
    expectClose(im2col, await run('conv'), 1e-5, 1e-5);
    expectClose(im2col, await run('gather'), 1e-5, 1e-5);
    // and the sum over the batch is the sum of each item's gradient
    const item = (i: number) => {
      const one = E.Tensor.input('x', [1, 4, h, w]);
      const yi = E.conv2d(one, wt, undefined, options);
      const ri = E.Tensor.input('r', yi.shape);
      const [g] = E.grad(E.sum(E.mul(yi, ri)), [wt]);
      const per = (t: { data: Float32Array; shape: number[] }) => ({ data: t.data.slice((i * t.data.length) / n, ((i + 1) * t.data.length) / n), shape: [1, ...t.shape.slice(1)] });
      return E.compile({ inputs: [one, wt, ri], outputs: { g } }).then((graph) => graph.run({ x: per(feeds.x), w: feeds.w, r: per(feeds.r) })).then((o) => o.g.data as Float32Array);
    };
    const items = await Promise.all([0, 1, 2].map(item));
    expectClose(im2col, im2col.map((_, k) => items[0][k] + items[1][k] + items[2][k]), 1e-5, 1e-5);
  });

  it('an input the loss does not use gets zeros of its run-time shape', async () => {
    const x = E.Tensor.input('x', [E.sym('B'), 2]);
    const unused = E.Tensor.input('unused', [E.sym('B'), 3]);
    const [g] = E.grad(E.sum(x), [unused]);
    const r = await (await E.compile({ inputs: [x, unused], outputs: { g } })).run({ x: { data: new Float32Array(4), shape: [2, 2] }, unused: { data: rand(6, 1), shape: [2, 3] } });
    expect(r.g.shape).toEqual([2, 3]);
    expectClose(r.g.data as Float32Array, new Array(6).fill(0));
  });
});
