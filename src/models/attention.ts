// The UNet's spatial transformer, with diffusers' parameter names: multi-head attention (self or
// cross), the GEGLU feed-forward, the transformer block, and Transformer2DModel which runs blocks
// over the H·W positions of a feature map.
//
// Attention control (Prompt-to-Prompt, attention-map capture) plugs in through `AttentionHook`:
// diffusers' per-layer attention processors and prompt-to-prompt's `AttentionControl` reduced to one
// call made while tracing each attention layer. It sees the probabilities and may replace them.

import {
  type Dim,
  Conv2d,
  GroupNorm,
  LayerNorm,
  Linear,
  Module,
  type Tensor,
  add,
  attention,
  attentionProbs,
  chunk,
  gelu,
  joinName,
  matmul,
  mergeHeads,
  mul,
  reshape,
  splitHeads,
  transpose,
} from '../engine/index.ts';
import { LoraLinear } from './lora-linear.ts';

export type AttentionPlace = 'down' | 'mid' | 'up';

/** What the hook is told about one attention layer, at trace time. */
export interface AttentionCall {
  place: AttentionPlace;
  /** Index of this call among all attention layers (self and cross) of one UNet forward, in execution order. */
  layer: number;
  isCross: boolean;
  heads: number;
  /** The query's spatial size: Lq = height·width. */
  height: Dim;
  width: Dim;
  /** softmax(q·kᵀ/√D): [B, heads, Lq, Lk], Lk = 77 text tokens for cross-attention, H·W for self. */
  probs: Tensor;
}

/**
 * Called while tracing each attention layer of a forward pass that was given it. Returning a tensor
 * of the same shape replaces the probabilities; undefined keeps them. The hook may also keep
 * `probs` (or something computed from it) to return as an extra graph output, and may use graph
 * inputs of its own (per-step weights, token maps) in what it returns.
 */
export interface AttentionHook {
  attention(call: AttentionCall): Tensor | undefined;
  /**
   * Whether `attention` needs this layer at all, told before its probabilities exist. Layers a hook
   * declines keep the fused attention kernel, which never materialises [B, heads, Lq, Lk] (gigabytes
   * for 64×64 self-attention). Without this method every layer is offered.
   */
  wants?(layer: AttentionLayer): boolean;
}

/** An attention layer as a hook first sees it: everything but the probabilities. */
export type AttentionLayer = Omit<AttentionCall, 'probs'>;

/** Where in the UNet a transformer is traced, for the hook: the place and a shared call counter. */
export interface HookSite {
  hook: AttentionHook;
  place: AttentionPlace;
  nextLayer(): number;
}

/** The spatial context an attention layer needs to describe itself to a hook. */
interface HookContext {
  site: HookSite;
  height: Dim;
  width: Dim;
}

/** Multi-head attention: to_q / to_k / to_v without bias, `to_out.0` with; scale D^−½. The four projections accept LoRA adapters. */
export class Attention extends Module {
  readonly to_q: LoraLinear;
  readonly to_k: LoraLinear;
  readonly to_v: LoraLinear;
  readonly to_out: LoraLinear;
  readonly scale: number;

  /** `crossDim` is the width of the context for cross-attention; undefined for self-attention. */
  constructor(name: string, queryDim: number, readonly heads: number, readonly headDim: number, readonly crossDim?: number) {
    super(name);
    const inner = heads * headDim;
    this.to_q = new LoraLinear(joinName(name, 'to_q'), queryDim, inner, false);
    this.to_k = new LoraLinear(joinName(name, 'to_k'), crossDim ?? queryDim, inner, false);
    this.to_v = new LoraLinear(joinName(name, 'to_v'), crossDim ?? queryDim, inner, false);
    this.to_out = new LoraLinear(joinName(name, 'to_out.0'), inner, queryDim);
    this.scale = 1 / Math.sqrt(headDim);
  }

  /** x [B, Lq, queryDim], context [B, Lk, crossDim] (absent for self-attention) → [B, Lq, queryDim] */
  forward(x: Tensor, context?: Tensor, hookContext?: HookContext): Tensor {
    const source = context ?? x;
    const q = this.to_q.forward(x);
    const k = this.to_k.forward(source);
    const v = this.to_v.forward(source);
    let out: Tensor | undefined;
    if (hookContext) {
      const { site, height, width } = hookContext;
      const layer = { place: site.place, layer: site.nextLayer(), isCross: context !== undefined, heads: this.heads, height, width };
      if (site.hook.wants?.(layer) ?? true) {
        const probs = attentionProbs(q, k, this.heads, this.scale); // [B, heads, Lq, Lk]
        const used = site.hook.attention({ ...layer, probs }) ?? probs;
        out = mergeHeads(matmul(used, splitHeads(v, this.heads)));
      }
    }
    out ??= attention(q, k, v, this.heads, this.scale);
    return this.to_out.forward(out);
  }
}

/** GEGLU feed-forward: `net.0.proj` to 2·inner (value and gate), value·GELU(gate), `net.2` back. */
export class FeedForward extends Module {
  readonly proj: Linear;
  readonly out: Linear;

  constructor(name: string, dim: number, mult = 4) {
    super(name);
    const inner = dim * mult;
    this.proj = new Linear(joinName(name, 'net.0.proj'), dim, inner * 2);
    this.out = new Linear(joinName(name, 'net.2'), inner, dim);
  }

  forward(x: Tensor): Tensor {
    const [value, gate] = chunk(this.proj.forward(x), 2, -1);
    return this.out.forward(mul(value, gelu(gate)));
  }
}

/** Pre-norm self-attention, cross-attention to the text, and feed-forward, each residual. */
export class BasicTransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm;
  readonly attn2: Attention;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;

  constructor(name: string, dim: number, heads: number, headDim: number, crossDim: number) {
    super(name);
    this.norm1 = new LayerNorm(joinName(name, 'norm1'), dim, 1e-5);
    this.attn1 = new Attention(joinName(name, 'attn1'), dim, heads, headDim);
    this.norm2 = new LayerNorm(joinName(name, 'norm2'), dim, 1e-5);
    this.attn2 = new Attention(joinName(name, 'attn2'), dim, heads, headDim, crossDim);
    this.norm3 = new LayerNorm(joinName(name, 'norm3'), dim, 1e-5);
    this.ff = new FeedForward(joinName(name, 'ff'), dim);
  }

  /** x [B, H·W, dim], context [B, tokens, crossDim] */
  forward(x: Tensor, context: Tensor, hookContext?: HookContext): Tensor {
    let h = add(this.attn1.forward(this.norm1.forward(x), undefined, hookContext), x);
    h = add(this.attn2.forward(this.norm2.forward(h), context, hookContext), h);
    return add(this.ff.forward(this.norm3.forward(h)), h);
  }
}

export interface Transformer2DOptions {
  heads: number;
  headDim: number;
  /** Channels of the feature map (in and out). */
  channels: number;
  crossDim: number;
  layers?: number;
  groups?: number;
  /** proj_in / proj_out as Linear layers over tokens (SD 2) instead of 1×1 convs (SD 1). */
  useLinearProjection?: boolean;
}

/** GroupNorm → proj_in → transformer blocks over the H·W positions → proj_out, plus the input. */
export class Transformer2DModel extends Module {
  readonly norm: GroupNorm;
  readonly proj_in: Conv2d | Linear;
  readonly transformer_blocks: BasicTransformerBlock[];
  readonly proj_out: Conv2d | Linear;

  constructor(name: string, o: Transformer2DOptions) {
    super(name);
    const inner = o.heads * o.headDim;
    this.norm = new GroupNorm(joinName(name, 'norm'), o.groups ?? 32, o.channels, 1e-6);
    const project = (local: string, from: number, to: number) =>
      o.useLinearProjection ? new Linear(joinName(name, local), from, to) : new Conv2d(joinName(name, local), from, to, 1);
    this.proj_in = project('proj_in', o.channels, inner);
    this.transformer_blocks = Array.from(
      { length: o.layers ?? 1 },
      (_, i) => new BasicTransformerBlock(joinName(name, `transformer_blocks.${i}`), inner, o.heads, o.headDim, o.crossDim),
    );
    this.proj_out = project('proj_out', inner, o.channels);
  }

  /** x [B, C, H, W], context [B, tokens, crossDim] → [B, C, H, W] */
  forward(x: Tensor, context: Tensor, site?: HookSite): Tensor {
    const [b, , height, width] = x.shape;
    const toTokens = (t: Tensor) => reshape(transpose(t, [0, 2, 3, 1]), [b, -1, t.shape[1]]); // [B, H·W, C]
    const toMap = (t: Tensor) => transpose(reshape(t, [b, height, width, t.shape[2]]), [0, 3, 1, 2]);
    let h = this.norm.forward(x);
    h = this.proj_in instanceof Conv2d ? toTokens(this.proj_in.forward(h)) : this.proj_in.forward(toTokens(h));
    const hookContext = site && { site, height, width };
    for (const block of this.transformer_blocks) h = block.forward(h, context, hookContext);
    h = this.proj_out instanceof Conv2d ? this.proj_out.forward(toMap(h)) : toMap(this.proj_out.forward(h));
    return add(h, x);
  }
}
