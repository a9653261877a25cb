// Training with the engine end to end: a small conv net learns a toy task with autodiff + AdamW,
// and the optimisers and gradient clipping do exactly their textbook updates.

import { describe, expect, it } from 'vitest';
import * as E from '../../src/engine/index.ts';
import { expectClose, rand } from './helpers.ts';

/** 8×8 images of horizontal (class 0) or vertical (class 1) stripes, random phase, period and noise. */
function stripes(count: number, rng: E.Generator): { images: Float32Array; labels: number[] } {
  const images = new Float32Array(count * 64);
  const noise = rng.randn(count * 64);
  const labels: number[] = [];
  for (let n = 0; n < count; n++) {
    const label = n % 2;
    const period = 2 + rng.randint(3);
    const phase = rng.randint(period);
    for (let y = 0; y < 8; y++)
      for (let x = 0; x < 8; x++) {
        const along = label === 0 ? y : x;
        images[n * 64 + y * 8 + x] = ((along + phase) % period === 0 ? 1 : -0.3) + 0.2 * noise[n * 64 + y * 8 + x];
      }
    labels.push(label);
  }
  return { images, labels };
}

class StripeNet {
  readonly c1 = new E.Conv2d('c1', 1, 4, 3, { padding: 1 });
  readonly c2 = new E.Conv2d('c2', 4, 8, 3, { stride: 2, padding: 1 });
  readonly norm = new E.GroupNorm('norm', 2, 8);
  readonly head = new E.Linear('head', 8 * 4 * 4, 2);
  readonly modules = [this.c1, this.c2, this.norm, this.head];

  forward(x: E.Tensor): E.Tensor {
    const h = this.norm.forward(this.c2.forward(E.silu(this.c1.forward(x)))); // [N, 8, 4, 4]
    return this.head.forward(E.reshape(h, [x.shape[0], -1])); // [N, 2]
  }

  parameters(): E.Parameter[] {
    return this.modules.flatMap((m) => m.parameters());
  }
}

/** Mean cross-entropy of logits [N, 2] against one-hot targets [N, 2]. */
function crossEntropy(logits: E.Tensor, oneHot: E.Tensor): E.Tensor {
  return E.neg(E.mean(E.sum(E.mul(E.logSoftmax(logits), oneHot), -1)));
}

describe('training a conv net', () => {
  it('Conv2d → SiLU → Conv2d/2 → GroupNorm → Linear learns stripes with AdamW: loss falls 10×', async () => {
    const rng = new E.Generator(2024);
    const net = new StripeNet();
    for (const m of net.modules) m.init(rng);
    const params = net.parameters();

    const x = E.Tensor.input('images', [8, 1, 8, 8]);
    const target = E.Tensor.input('target', [8, 2]);
    const logits = net.forward(x);
    const loss = crossEntropy(logits, target);
    const grads = E.grad(loss, params.map((p) => p.tensor));
    const step = await E.compile({ inputs: [x, target], outputs: { loss, ...Object.fromEntries(grads.map((g, i) => [`g${i}`, g])) }, trainable: params });
    const predict = await E.compile({ inputs: [x], outputs: { logits }, trainable: params });

    // A fresh batch every step, so falling loss means learning the patterns, not memorising 8 images.
    const batch = () => {
      const { images, labels } = stripes(8, rng);
      const oneHot = Float32Array.from(labels.flatMap((l) => (l ? [0, 1] : [1, 0])));
      return { images: { data: images, shape: [8, 1, 8, 8] }, target: { data: oneHot, shape: [8, 2] } };
    };
    const optimizer = new E.AdamW(params, { lr: 1e-2 });
    const losses: number[] = [];
    for (let i = 0; i < 150; i++) {
      const r = await step.run(batch());
      losses.push((r.loss.data as Float32Array)[0]);
      optimizer.step(params.map((_, k) => r[`g${k}`].data as Float32Array));
    }
    const average = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(average(losses.slice(-10))).toBeLessThan(average(losses.slice(0, 10)) / 10);

    // Unseen stripes are classified correctly.
    const test = stripes(8, rng);
    const out = (await predict.run({ images: { data: test.images, shape: [8, 1, 8, 8] } })).logits.data as Float32Array;
    const predicted = test.labels.map((_, n) => (out[2 * n + 1] > out[2 * n] ? 1 : 0));
    expect(predicted).toEqual(test.labels);
  });
});

describe('optimisers', () => {
  it('SGD fits a linear regression and its step is w − lr·g (with momentum: v = μv + g)', async () => {
    const w = new E.Parameter('w', [3, 1]);
    w.setValue(new Float32Array(3));
    const x = E.Tensor.input('x', [16, 3]);
    const y = E.Tensor.input('y', [16, 1]);
    const err = E.sub(E.matmul(x, w.tensor), y);
    const loss = E.mean(E.mul(err, err));
    const [gw] = E.grad(loss, [w.tensor]);
    const graph = await E.compile({ inputs: [x, y], outputs: { loss, gw }, trainable: [w] });
    const xv = rand(48, 1);
    const truth = [0.5, -1, 2];
    const yv = Float32Array.from({ length: 16 }, (_, i) => truth.reduce((s, t, j) => s + t * xv[i * 3 + j], 0));
    const feeds = { x: { data: xv, shape: [16, 3] }, y: { data: yv, shape: [16, 1] } };

    const sgd = new E.SGD([w], 0.3, 0.5);
    const first = await graph.run(feeds);
    const g0 = (first.gw.data as Float32Array).slice();
    sgd.step([g0]);
    expectClose(w.value(), Array.from(g0, (g) => -0.3 * g), 1e-7);
    const g1 = ((await graph.run(feeds)).gw.data as Float32Array).slice();
    const before = w.value().slice();
    sgd.step([g1]);
    expectClose(w.value(), Array.from(before, (v, i) => v - 0.3 * (0.5 * g0[i] + g1[i])), 1e-6);

    for (let i = 0; i < 200; i++) sgd.step([(await graph.run(feeds)).gw.data as Float32Array]);
    const last = (await graph.run(feeds)).loss.data as Float32Array;
    expect(last[0]).toBeLessThan(((first.loss.data as Float32Array)[0]) / 1000);
    expectClose(w.value(), truth, 1e-2);
  });

  it('AdamW: the first step moves each weight by lr against the gradient sign, after decoupled decay', () => {
    const p = new E.Parameter('p', [3]);
    p.setValue(Float32Array.of(1, -2, 0.5));
    const adam = new E.AdamW([p], { lr: 0.1, weightDecay: 0.01 });
    adam.step([Float32Array.of(0.5, -3, 0)]);
    // w·(1 − lr·wd) − lr·m̂/(√v̂ + ε), with m̂ = g and √v̂ = |g| on step 1
    expectClose(p.value(), [1 * 0.999 - 0.1, -2 * 0.999 + 0.1, 0.5 * 0.999], 1e-6);
    expect(adam.stepCount).toBe(1);
  });

  it('AdamW follows the textbook update over several steps (bias-corrected moments, decoupled decay)', () => {
    const p = new E.Parameter('p', [5]);
    const start = Float32Array.of(0.3, -1.2, 0.05, 2, -0.4);
    p.setValue(start);
    const lr = 0.02, beta1 = 0.8, beta2 = 0.95, eps = 1e-6, weightDecay = 0.1;
    const adam = new E.AdamW([p], { lr, beta1, beta2, eps, weightDecay });
    const w = Array.from(start), m = [0, 0, 0, 0, 0], v = [0, 0, 0, 0, 0];
    for (let t = 1; t <= 6; t++) {
      const g = rand(5, 40 + t);
      adam.step([g]);
      for (let i = 0; i < 5; i++) {
        m[i] = beta1 * m[i] + (1 - beta1) * g[i];
        v[i] = beta2 * v[i] + (1 - beta2) * g[i] ** 2;
        w[i] = w[i] * (1 - lr * weightDecay) - (lr * (m[i] / (1 - beta1 ** t))) / (Math.sqrt(v[i] / (1 - beta2 ** t)) + eps);
      }
    }
    expectClose(p.value(), w, 1e-6);
  });

  it('AdamW computes in float32 exactly as written, across its kernel\'s 16,384-weight chunks and a ragged tail', () => {
    const size = 2 * 16384 + 7;
    const p = new E.Parameter('p', [size]);
    const start = rand(size, 60);
    p.setValue(start);
    const [lr, beta1, beta2, eps, weightDecay] = [0.01, 0.9, 0.999, 1e-8, 0.01];
    const adam = new E.AdamW([p], { lr, beta1, beta2, eps, weightDecay });
    // float32 arithmetic: Math.fround of each double operation on float32 operands is its float32 result
    const f = Math.fround;
    const w = Float32Array.from(start), m = new Float32Array(size), v = new Float32Array(size);
    const [b1, b2] = [f(beta1), f(beta2)];
    const [c1, c2] = [f(1 - b1), f(1 - b2)];
    for (let t = 1; t <= 3; t++) {
      const g = rand(size, 60 + t);
      adam.step([g]);
      const [s1, o2, decay] = [f(lr / (1 - beta1 ** t)), f(1 / (1 - beta2 ** t)), f(1 - lr * weightDecay)];
      for (let i = 0; i < size; i++) {
        m[i] = f(f(b1 * m[i]) + f(c1 * g[i]));
        v[i] = f(f(b2 * v[i]) + f(c2 * f(g[i] * g[i])));
        w[i] = f(f(w[i] * decay) - f(f(s1 * m[i]) / f(f(Math.sqrt(f(v[i] * o2))) + f(eps))));
      }
    }
    expect(Buffer.from(p.value().buffer).equals(Buffer.from(w.buffer))).toBe(true);
  });

  it('AdamW resumes from its saved state exactly', () => {
    const make = () => {
      const p = new E.Parameter('p', [4]);
      p.setValue(Float32Array.of(0.1, 0.2, 0.3, 0.4));
      return p;
    };
    const grads = [0, 1, 2, 3].map((i) => rand(4, i));
    const straight = make();
    const a = new E.AdamW([straight], { lr: 0.05 });
    for (const g of grads) a.step([g]);

    const resumed = make();
    const b = new E.AdamW([resumed], { lr: 0.05 });
    b.step([grads[0]]);
    b.step([grads[1]]);
    const saved = b.state();
    const weights = resumed.value().slice();
    const c = new E.AdamW([resumed], { lr: 0.05 });
    resumed.setValue(weights);
    c.loadState(saved);
    c.step([grads[2]]);
    c.step([grads[3]]);
    expectClose(resumed.value(), straight.value(), 0, 0);
  });

  it('clipGradNorm scales to the max norm and returns the norm before clipping', () => {
    const grads = [Float32Array.of(3, 0), Float32Array.of(0, 4)];
    expect(E.clipGradNorm(grads, 1)).toBeCloseTo(5, 6);
    expectClose([...grads[0], ...grads[1]], [0.6, 0, 0, 0.8], 1e-6);
    const small = [Float32Array.of(0.3, 0.4)];
    expect(E.clipGradNorm(small, 1)).toBeCloseTo(0.5, 6);
    expectClose(small[0], [0.3, 0.4], 1e-7);
  });

  it('optimisers refuse gradients that do not match their parameters', () => {
    const p = new E.Parameter('p', [3]);
    p.setValue(new Float32Array(3));
    expect(() => new E.SGD([p]).step([new Float32Array(2)])).toThrow(/gradient for p has 2 values, expected 3/);
    expect(() => new E.AdamW([p]).step([])).toThrow(/1 parameters but 0 gradients/);
  });
});
