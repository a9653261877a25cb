// Optimisers over Parameters, outside the graph: the update is cheap next to the graph run that
// produced the gradients, and keeping it here makes its state easy to checkpoint and resume.

import type { Parameter } from './parameter.ts';
import { reserve, wasmKernels } from './wasm.ts';

export interface Optimizer {
  /** Applies one update from gradients (same order as the parameters) at learning rate `lr`. */
  step(grads: readonly Float32Array[], lr?: number): void;
  readonly stepCount: number;
  state(): Record<string, Float32Array | number>;
  loadState(state: Record<string, Float32Array | number>): void;
}

export interface AdamWOptions {
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

/** Weights per call of AdamW's kernel: four 64 KB arrays. */
const ADAMW_CHUNK = 16384;

/**
 * AdamW (Loshchilov & Hutter): Adam with bias correction and decoupled weight decay, updated in
 * float32 by a WebAssembly SIMD kernel (adamw.wat): 40 ms a step for the default model's 12.6M
 * weights in `npm run bench:train`, where a plain JavaScript loop took 168 ms.
 */
export class AdamW implements Optimizer {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  stepCount = 0;
  private readonly m: Float32Array[];
  private readonly v: Float32Array[];

  constructor(readonly params: readonly Parameter[], options: AdamWOptions = {}) {
    this.lr = options.lr ?? 1e-3;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 1e-2;
    this.m = params.map((p) => new Float32Array(p.size));
    this.v = params.map((p) => new Float32Array(p.size));
  }

  step(grads: readonly Float32Array[], lr = this.lr): void {
    checkGrads(this.params, grads);
    this.stepCount++;
    const { beta1, beta2, eps } = this;
    // The bias corrections fold into two factors: m̂ = m/c1, v̂ = v/c2.
    const stepOverC1 = lr / (1 - beta1 ** this.stepCount);
    const overC2 = 1 / (1 - beta2 ** this.stepCount);
    const decay = 1 - lr * this.weightDecay;
    // adamw.wat, a chunk at a time through its memory: the weights stay where they are (a model can
    // hold more than WebAssembly's 4 GB), and the four chunks stay in cache.
    const k = wasmKernels<{ update(w: number, g: number, m: number, v: number, count: number, beta1: number, beta2: number, stepOverC1: number, overC2: number, eps: number, decay: number): void }>('adamw');
    reserve(k.memory, 16 * ADAMW_CHUNK);
    const heap = new Float32Array(k.memory.buffer, 0, 4 * ADAMW_CHUNK);
    const [W, G, M, V] = [0, 1, 2, 3].map((i) => i * ADAMW_CHUNK);
    for (let p = 0; p < this.params.length; p++) {
      const w = this.params[p].materialize();
      const [g, m, v] = [grads[p], this.m[p], this.v[p]];
      for (let i = 0; i < w.length; i += ADAMW_CHUNK) {
        const n = Math.min(ADAMW_CHUNK, w.length - i);
        heap.set(w.subarray(i, i + n), W);
        heap.set(g.subarray(i, i + n), G);
        heap.set(m.subarray(i, i + n), M);
        heap.set(v.subarray(i, i + n), V);
        k.update(4 * W, 4 * G, 4 * M, 4 * V, n, beta1, beta2, stepOverC1, overC2, eps, decay);
        w.set(heap.subarray(W, W + n), i);
        m.set(heap.subarray(M, M + n), i);
        v.set(heap.subarray(V, V + n), i);
      }
    }
  }

  state(): Record<string, Float32Array | number> {
    const s: Record<string, Float32Array | number> = { step: this.stepCount };
    this.params.forEach((p, k) => {
      s[`m.${p.name}`] = this.m[k];
      s[`v.${p.name}`] = this.v[k];
    });
    return s;
  }

  loadState(state: Record<string, Float32Array | number>): void {
    this.stepCount = state.step as number;
    this.params.forEach((p, k) => {
      const m = state[`m.${p.name}`];
      const v = state[`v.${p.name}`];
      if (!(m instanceof Float32Array) || !(v instanceof Float32Array) || m.length !== p.size || v.length !== p.size) {
        throw new Error(`optimiser state has no matching moments for ${p.name}`);
      }
      this.m[k].set(m);
      this.v[k].set(v);
    });
  }
}

/** Plain SGD with optional momentum. */
export class SGD implements Optimizer {
  stepCount = 0;
  private readonly velocity: Float32Array[];

  constructor(readonly params: readonly Parameter[], readonly lr = 1e-2, readonly momentum = 0) {
    this.velocity = params.map((p) => new Float32Array(momentum ? p.size : 0));
  }

  step(grads: readonly Float32Array[], lr = this.lr): void {
    checkGrads(this.params, grads);
    this.stepCount++;
    this.params.forEach((p, k) => {
      const w = p.materialize();
      const g = grads[k];
      const vel = this.velocity[k];
      for (let i = 0; i < w.length; i++) {
        const d = this.momentum ? (vel[i] = this.momentum * vel[i] + g[i]) : g[i];
        w[i] -= lr * d;
      }
    });
  }

  state(): Record<string, Float32Array | number> {
    const s: Record<string, Float32Array | number> = { step: this.stepCount };
    this.params.forEach((p, k) => (s[`velocity.${p.name}`] = this.velocity[k]));
    return s;
  }

  loadState(state: Record<string, Float32Array | number>): void {
    this.stepCount = state.step as number;
    this.params.forEach((p, k) => {
      const v = state[`velocity.${p.name}`];
      if (v instanceof Float32Array && v.length === this.velocity[k].length) this.velocity[k].set(v);
    });
  }
}

function checkGrads(params: readonly Parameter[], grads: readonly Float32Array[]): void {
  if (grads.length !== params.length) throw new Error(`optimiser: ${params.length} parameters but ${grads.length} gradients`);
  params.forEach((p, k) => {
    if (grads[k].length !== p.size) throw new Error(`optimiser: gradient for ${p.name} has ${grads[k].length} values, expected ${p.size}`);
  });
}

/** Scales gradients so their global L2 norm is at most `maxNorm`; returns the norm before clipping. */
export function clipGradNorm(grads: readonly Float32Array[], maxNorm: number): number {
  let sq = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
  const norm = Math.sqrt(sq);
  if (norm > maxNorm) {
    const s = maxNorm / (norm + 1e-6);
    for (const g of grads) for (let i = 0; i < g.length; i++) g[i] *= s;
  }
  return norm;
}
