// Neural-network primitives: softmax, layer and group normalisation, multi-head attention. Each is
// one op (so it can emit ONNX Runtime's fused kernel) with a VJP written in simpler engine ops.

import { type Dim, dimDiv, shapeToString } from '../dims.ts';
import type { Emitter } from '../emit.ts';
import { type OpNode, type OpSpec, type Tensor, makeOp } from '../tensor.ts';
import { add, exp, mul, reciprocal, sqrt, sub } from './elementwise.ts';
import { matmul } from './linalg.ts';
import { mean, normalizeAxes, sum, sumTo } from './reduce.ts';
import { concat, reshape, split, transpose, transposeLast, unsqueeze } from './shape.ts';

/**
 * Which ONNX forms to emit: fused kernels (LayerNormalization, GroupNormalization, com.microsoft
 * MultiHeadAttention) or the same maths in plain ops. Measured on SD-1.5 (bench/sd-kernels.bench.ts):
 * fused attention is faster and far lighter (4.3 vs 8.5 GB peak per UNet step at 512²); fused
 * GroupNormalization is no faster and raises the VAE decoder's peak (3.0 vs 2.4 GB at 512²).
 */
export const fusedKernels = { layerNorm: true, groupNorm: false, attention: true };

const SOFTMAX: OpSpec = {
  type: 'Softmax',
  emit: (e, n) => e.node('Softmax', [e.value(n.inputs[0])], { axis: n.attrs.axis }),
  vjp: (g, n, out) => [mul(out, sub(g, sum(mul(g, out), n.attrs.axis as number, true)))],
};
const LOG_SOFTMAX: OpSpec = {
  type: 'LogSoftmax',
  emit: (e, n) => e.node('LogSoftmax', [e.value(n.inputs[0])], { axis: n.attrs.axis }),
  vjp: (g, n, out) => [sub(g, mul(exp(out), sum(g, n.attrs.axis as number, true)))],
};

export function softmax(x: Tensor, axis = -1): Tensor {
  return makeOp(SOFTMAX, [x], x.shape, x.dtype, { axis: normalizeAxes(axis, x.rank, 'softmax')[0] });
}

export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return makeOp(LOG_SOFTMAX, [x], x.shape, x.dtype, { axis: normalizeAxes(axis, x.rank, 'logSoftmax')[0] });
}

/** (x − mean) / √(var + ε) over the last axis, in plain ops; returns the normalised value and 1/σ. */
function normalizeLast(x: Tensor, eps: number): { xhat: Tensor; rstd: Tensor } {
  const centered = sub(x, mean(x, -1, true));
  const rstd = reciprocal(sqrt(add(mean(mul(centered, centered), -1, true), eps)));
  return { xhat: mul(centered, rstd), rstd };
}

/** Gradient of x̂ = normalizeLast(x) given dL/dx̂. */
function normalizeLastGrad(gxhat: Tensor, xhat: Tensor, rstd: Tensor): Tensor {
  const meanG = mean(gxhat, -1, true);
  const meanGX = mean(mul(gxhat, xhat), -1, true);
  return mul(rstd, sub(sub(gxhat, meanG), mul(xhat, meanGX)));
}

const LAYER_NORM: OpSpec = {
  type: 'LayerNorm',
  emit: (e: Emitter, n: OpNode) => {
    const [x, w, b] = n.inputs;
    const eps = n.attrs.eps as { float: number };
    if (fusedKernels.layerNorm) return e.node('LayerNormalization', [e.value(x), e.value(w), e.value(b)], { axis: -1, epsilon: eps });
    return e.value(add(mul(normalizeLast(x, eps.float).xhat, w), b));
  },
  vjp: (g, n) => {
    const [x, w, b] = n.inputs;
    const { xhat, rstd } = normalizeLast(x, (n.attrs.eps as { float: number }).float);
    return [normalizeLastGrad(mul(g, w), xhat, rstd), sumTo(mul(g, xhat), w.shape), sumTo(g, b.shape)];
  },
};

/** Layer normalisation over the last axis with weight and bias of that axis' size. */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const c = x.shape[x.rank - 1];
  if (weight.rank !== 1 || weight.shape[0] !== c || bias.rank !== 1 || bias.shape[0] !== c) {
    throw new Error(`layerNorm: weight ${weight} and bias ${bias} must be [${c}] for ${x}`);
  }
  return makeOp(LAYER_NORM, [x, weight, bias], x.shape, x.dtype, { eps: { float: eps } as never });
}

function groupNormComposite(x: Tensor, groups: number, eps: number): { xhat: Tensor; rstd: Tensor; grouped: Tensor } {
  const grouped = reshape(x, [x.shape[0], groups, -1]);
  return { ...normalizeLast(grouped, eps), grouped };
}

function channelShape(t: Tensor, x: Tensor): Tensor {
  return reshape(t, [t.shape[0], ...new Array<Dim>(x.rank - 2).fill(1)]);
}

const GROUP_NORM: OpSpec = {
  type: 'GroupNorm',
  emit: (e, n) => {
    const [x, w, b] = n.inputs;
    const { groups, eps } = n.attrs as { groups: number; eps: { float: number } };
    if (fusedKernels.groupNorm) return e.node('GroupNormalization', [e.value(x), e.value(w), e.value(b)], { num_groups: groups, epsilon: eps });
    const xhat = reshape(groupNormComposite(x, groups, eps.float).xhat, x.shape);
    return e.value(add(mul(xhat, channelShape(w, x)), channelShape(b, x)));
  },
  vjp: (g, n) => {
    const [x, w, b] = n.inputs;
    const { groups, eps } = n.attrs as { groups: number; eps: { float: number } };
    const { xhat, rstd } = groupNormComposite(x, groups, eps.float);
    const xhatFull = reshape(xhat, x.shape);
    const gxhat = reshape(mul(g, channelShape(w, x)), xhat.shape);
    const reduceAxes = [0, ...x.shape.slice(2).map((_, i) => i + 2)];
    return [
      reshape(normalizeLastGrad(gxhat, xhat, rstd), x.shape),
      reshape(sum(mul(g, xhatFull), reduceAxes), w.shape),
      reshape(sum(g, reduceAxes), b.shape),
    ];
  },
};

/** Group normalisation of [N, C, …] with per-channel weight and bias [C]. */
export function groupNorm(x: Tensor, groups: number, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const c = x.shape[1];
  if (typeof c !== 'number' || c % groups) throw new Error(`groupNorm: ${c} channels do not split into ${groups} groups (${x})`);
  if (weight.shape[0] !== c || bias.shape[0] !== c) throw new Error(`groupNorm: weight/bias must be [${c}], got ${shapeToString(weight.shape)}`);
  return makeOp(GROUP_NORM, [x, weight, bias], x.shape, x.dtype, { groups, eps: { float: eps } as never });
}

/** [B, L, heads·D] → [B, heads, L, D] */
export function splitHeads(x: Tensor, heads: number): Tensor {
  const [b, l, c] = x.shape;
  return transpose(reshape(x, [b, l, heads, dimDiv(c, heads)]), [0, 2, 1, 3]);
}

/** [B, heads, L, D] → [B, L, heads·D] */
export function mergeHeads(x: Tensor): Tensor {
  const [b, h, l, d] = x.shape;
  return reshape(transpose(x, [0, 2, 1, 3]), [b, l, typeof d === 'number' && typeof h === 'number' ? h * d : -1]);
}

/** softmax(q·kᵀ·scale) per head, [B, heads, Lq, Lk]: the attention probabilities, in plain ops. */
export function attentionProbs(q: Tensor, k: Tensor, heads: number, scale: number): Tensor {
  return softmax(mul(matmul(splitHeads(q, heads), transposeLast(splitHeads(k, heads))), scale), -1);
}

const ATTENTION: OpSpec = {
  type: 'Attention',
  emit: (e, n) => {
    const [q, k, v] = n.inputs;
    const { heads, scale } = n.attrs as { heads: number; scale: { float: number } };
    if (e.keeps(n) && e.kernels.keptAttentionForward === 'plain') {
      const p = attentionProbs(q, k, heads, scale.float);
      e.keep(n, e.value(p));
      return e.value(mergeHeads(matmul(p, splitHeads(v, heads))));
    }
    if (e.keeps(n)) {
      // ONNX's own Attention (opset 23) is a fused kernel that can also return P, which the backward
      // then reads (ATTENTION_PROBS) instead of recomputing it.
      const [out, , , p] = e.nodeOutputs('Attention', [e.value(q), e.value(k), e.value(v)], { q_num_heads: heads, kv_num_heads: heads, scale, qk_matmul_output_mode: 3 }, { opset: 23, outputs: [true, false, false, true] });
      e.keep(n, p);
      return out;
    }
    if (fusedKernels.attention) {
      return e.node('MultiHeadAttention', [e.value(q), e.value(k), e.value(v)], { num_heads: heads, scale }, { domain: 'com.microsoft' });
    }
    return e.value(mergeHeads(matmul(attentionProbs(q, k, heads, scale.float), splitHeads(v, heads))));
  },
  vjp: (g, n, out) => {
    const [q, k, v] = n.inputs;
    const { heads, scale } = n.attrs as { heads: number; scale: { float: number } };
    const s = scale.float;
    const p = makeOp(ATTENTION_PROBS, [q, k, out], [q.shape[0], heads, q.shape[1], k.shape[1]], q.dtype, n.attrs);
    const [qh, kh, vh, gh, oh] = [q, k, v, g, out].map((t) => splitHeads(t, heads));
    // Softmax backward needs rowsum(gp ∘ P), which equals rowsum(g ∘ P·V) per head: [Lq, D]-sized work.
    const r = sum(mul(gh, oh), -1, true);
    const d = qh.shape[3];
    const grads = typeof d === 'number' && useLowRankAttentionGrad(d) ? lowRankAttentionGrads(p, qh, kh, vh, gh, r, d) : denseAttentionGrads(p, qh, kh, vh, gh, r);
    return [mergeHeads(mul(grads.gq, s)), mergeHeads(mul(grads.gk, s)), mergeHeads(grads.gv)];
  },
};

/**
 * The backward's P [B, heads, Lq, Lk] for the attention op that made `out` (its inputs: q, k, out).
 * Within the graph's budget for kept intermediates (KernelForms.keptBytes) the forward returns P
 * and this is that value; beyond it P is recomputed here, so only one layer's P is alive at a time.
 * It exists only inside gradients; a second derivative through it is not defined.
 */
const ATTENTION_PROBS: OpSpec = {
  type: 'AttentionProbs',
  keeps: (n, out) => {
    const forward = n.inputs[2].origin;
    if (forward.kind !== 'op' || forward.node.spec !== ATTENTION) return undefined;
    const size = out.shape.reduce<number | undefined>((a, d) => (a !== undefined && typeof d === 'number' ? a * d : undefined), 1);
    return size === undefined ? undefined : { node: forward.node, bytes: 4 * size };
  },
  emit: (e, n) => {
    const forward = n.inputs[2].origin;
    const kept = forward.kind === 'op' ? e.kept(forward.node) : undefined;
    if (kept) return kept;
    const { heads, scale } = n.attrs as { heads: number; scale: { float: number } };
    return e.value(attentionProbs(n.inputs[0], n.inputs[1], heads, scale.float));
  },
};

/**
 * How the attention VJP forms the score gradient gs = P ∘ (g·vᵀ − r): `dense` materialises it (two
 * more [Lq, Lk] tensors and three elementwise passes over them per head), `low-rank` never does,
 * at D² instead of D multiply–adds per score — cheaper while D is small, since those passes are
 * memory-bound. `auto` picks low-rank for head dims up to 8. On the tiny fixture UNet (D = 4, 1024
 * queries, batch 8) it lowers the training step's peak memory from 1.86 to 1.22 GB; its speed is
 * the same on idle cores and better when another process shares the memory bus (4.9× → ~4.1× the
 * forward, profiled with NURI_ORT_PROFILE).
 */
export const attentionGradForm: { form: 'auto' | 'low-rank' | 'dense' } = { form: 'auto' };

function useLowRankAttentionGrad(headDim: number): boolean {
  return attentionGradForm.form === 'low-rank' || (attentionGradForm.form === 'auto' && headDim <= 8);
}

interface AttentionGrads {
  gq: Tensor;
  gk: Tensor;
  gv: Tensor;
}

/** Per head, [B, heads, L, D]; gq and gk before the softmax scale. */
function denseAttentionGrads(p: Tensor, qh: Tensor, kh: Tensor, vh: Tensor, gh: Tensor, r: Tensor): AttentionGrads {
  const gs = mul(p, sub(matmul(gh, transposeLast(vh)), r));
  return { gq: matmul(gs, kh), gk: matmul(transposeLast(gs), qh), gv: matmul(transposeLast(p), gh) };
}

/**
 * The same gradients with P as the only [Lq, Lk] tensor. With gs = P ∘ (g·vᵀ) − r ∘ P:
 *   (gs·k)[i, e]  = Σ_d g[i, d] · (P · (v[:, d] ∘ k))[i, e] − r[i] · (P·k)[i, e]
 *   (gsᵀ·q)[j, e] = Σ_d v[j, d] · (Pᵀ · (g[:, d] ∘ q))[j, e] − (Pᵀ · (r ∘ q))[j, e]
 * so two matmuls against P, with D² + D and D² + 2D columns (the latter also giving gv = Pᵀ·g).
 */
function lowRankAttentionGrads(p: Tensor, qh: Tensor, kh: Tensor, vh: Tensor, gh: Tensor, r: Tensor, d: number): AttentionGrads {
  // [B, heads, L, D] ⊗ [B, heads, L, D] → [B, heads, L, D·D], entry (a, b) = x[a] · y[b]
  const outer = (x: Tensor, y: Tensor) => {
    const [b, h, l] = x.shape;
    return reshape(mul(unsqueeze(x, -1), unsqueeze(y, -2)), [b, h, l, d * d]);
  };
  // Σ_d w[:, d] · m[:, d, :] for m [B, heads, L, D·D] and w [B, heads, L, D] → [B, heads, L, D]
  const contract = (w: Tensor, m: Tensor) => {
    const [b, h, l] = m.shape;
    return sum(mul(unsqueeze(w, -1), reshape(m, [b, h, l, d, d])), -2);
  };
  const [pvk, pk] = split(matmul(p, concat([outer(vh, kh), kh], -1)), -1, [d * d, d]);
  // Pᵀ·W as (Wᵀ·P)ᵀ: ONNX Runtime's MatMul with a transposed P took 2.4× the time of P·W (profiled on
  // the tiny fixture UNet), Wᵀ·P 1.9×; transposing the thin [D² + 2D, Lk] result is cheap.
  const wq = concat([outer(gh, qh), mul(r, qh), gh], -1);
  const [ptgq, ptrq, gv] = split(transposeLast(matmul(transposeLast(wq), p)), -1, [d * d, d, d]);
  return { gq: sub(contract(gh, pvk), mul(r, pk)), gk: sub(contract(vh, ptgq), ptrq), gv };
}

/**
 * Multi-head scaled-dot-product attention on [B, L, heads·D] projections (no mask):
 * softmax(q·kᵀ·scale)·v per head, heads merged back. `scale` defaults to D^−½.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, heads: number, scale?: number): Tensor {
  const c = q.shape[2];
  if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3 || typeof c !== 'number' || c % heads) {
    throw new Error(`attention needs [B, L, heads·D] projections with ${heads} heads, got ${q}, ${k}, ${v}`);
  }
  const s = scale ?? 1 / Math.sqrt(c / heads);
  return makeOp(ATTENTION, [q, k, v], [q.shape[0], q.shape[1], v.shape[2]], q.dtype, { heads, scale: { float: s } as never });
}
