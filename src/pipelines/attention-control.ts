// Attention control for Prompt-to-Prompt (Hertz et al. 2022), as the UNet's AttentionHook. A source
// prompt and its edit are denoised together from the same noise; inside every attention layer the
// edit's probabilities are replaced by (a function of) the source's, so the edit keeps the source's
// layout:
//
//   cross-attention  edit ← α_step,token · E(source) + (1 − α_step,token) · edit, where
//                    E(source) = equalizer ⊙ (a·(source @ tokenMap) + (1 − a)·edit)
//                    (tokenMap/a from the word swap or refinement alignment, equalizer from re-weighting)
//   self-attention   edit ← source, on the steps chosen, in layers with at most 16×16 queries
//
// The batch is the classifier-free guidance batch [uncond src, uncond edit, cond src, cond edit]
// (or [src, edit] without guidance); only the conditional pair is edited, as in the reference.
// Everything that changes between steps or between edits (α, the self-replacement switch, the
// token map, the equalizer) is a graph input, so one compiled session serves every step.

import { type CompiledGraph, Tensor, add, compile, concat, matmul, mul, slice, sub } from '../engine/index.ts';
import type { AttentionCall, AttentionHook, AttentionLayer } from '../models/unet.ts';
import type { Shape4 } from '../models/vae-runner.ts';
import { type StableDiffusion, traceUNet } from './stable-diffusion.ts';

/** Sees every attention layer's final probabilities (after any edit) while the UNet is traced. */
export interface AttentionObserver {
  /** The layers it records (default: all); the controller materialises only the layers someone needs. */
  wants?(layer: AttentionLayer): boolean;
  record(call: AttentionCall, probs: Tensor): void;
  /** What it gathered, as named graph outputs. */
  outputs(): Record<string, Tensor>;
}

/** A hook traced into a UNet of static size, with the graph inputs it adds and outputs it gathers. */
export interface ControlledHook extends AttentionHook {
  readonly inputs: readonly Tensor[];
  outputs(): Record<string, Tensor>;
}

/** The graph-input names of the Prompt-to-Prompt controller, fed per step (see `PromptToPromptPlan`). */
export const P2P_INPUTS = {
  crossAlpha: 'p2p_cross_alpha',
  selfReplace: 'p2p_self_replace',
  tokenMap: 'p2p_token_map',
  tokenAlphas: 'p2p_token_alphas',
  equalizer: 'p2p_equalizer',
} as const;

export interface PromptToPromptControlOptions {
  /** 4 with classifier-free guidance, 2 without. */
  batch: number;
  /** Text tokens per prompt (77). */
  tokens: number;
  /** Self-attention is replaced only in layers with at most this many queries (the reference's 16²). */
  selfReplaceMaxQueries?: number;
  observers?: readonly AttentionObserver[];
}

export class PromptToPromptControl implements ControlledHook {
  readonly batch: number;
  readonly selfReplaceMaxQueries: number;
  readonly observers: readonly AttentionObserver[];
  /** [tokens]: per edited token, how much of the source's cross-attention to take at this step. */
  readonly crossAlpha: Tensor;
  /** [1]: 1 on the steps whose self-attention is replaced, else 0. */
  readonly selfReplace: Tensor;
  readonly tokenMap: Tensor;
  readonly tokenAlphas: Tensor;
  readonly equalizer: Tensor;

  constructor(o: PromptToPromptControlOptions) {
    if (o.batch !== 2 && o.batch !== 4) throw new Error(`Prompt-to-Prompt runs a batch of 2 (source, edit) or 4 (with guidance), not ${o.batch}`);
    this.batch = o.batch;
    this.selfReplaceMaxQueries = o.selfReplaceMaxQueries ?? 16 * 16;
    this.observers = o.observers ?? [];
    this.crossAlpha = Tensor.input(P2P_INPUTS.crossAlpha, [o.tokens]);
    this.selfReplace = Tensor.input(P2P_INPUTS.selfReplace, [1]);
    this.tokenMap = Tensor.input(P2P_INPUTS.tokenMap, [o.tokens, o.tokens]);
    this.tokenAlphas = Tensor.input(P2P_INPUTS.tokenAlphas, [o.tokens]);
    this.equalizer = Tensor.input(P2P_INPUTS.equalizer, [o.tokens]);
  }

  get inputs(): Tensor[] {
    return [this.crossAlpha, this.selfReplace, this.tokenMap, this.tokenAlphas, this.equalizer];
  }

  /** Cross-attention and small self-attention layers are edited; others only when an observer records them. */
  wants(layer: AttentionLayer): boolean {
    return this.edits(layer) || this.observers.some((o) => o.wants?.(layer) ?? true);
  }

  private edits(layer: AttentionLayer): boolean {
    return layer.isCross || queries(layer) <= this.selfReplaceMaxQueries;
  }

  attention(call: AttentionCall): Tensor | undefined {
    const { probs, isCross } = call;
    let out = probs;
    if (this.edits(call)) {
      const b = this.batch;
      const source = slice(probs, 0, b - 2, b - 1); // [1, heads, Lq, Lk]
      const edited = slice(probs, 0, b - 1, b);
      const replaced = isCross ? this.replaceCross(source, edited) : mix(source, edited, this.selfReplace);
      out = concat(b > 2 ? [slice(probs, 0, 0, b - 2), source, replaced] : [source, replaced], 0);
    }
    for (const observer of this.observers) if (observer.wants?.(call) ?? true) observer.record(call, out);
    return out === probs ? undefined : out;
  }

  outputs(): Record<string, Tensor> {
    return Object.assign({}, ...this.observers.map((o) => o.outputs()));
  }

  /** The reference's arithmetic, term for term, so that α = 1 or 0 gives its values exactly. */
  private replaceCross(source: Tensor, edited: Tensor): Tensor {
    const mapped = mix(matmul(source, this.tokenMap), edited, this.tokenAlphas);
    return mix(mul(mapped, this.equalizer), edited, this.crossAlpha);
  }
}

/** a·w + b·(1 − w), w broadcast over the last axis. */
function mix(a: Tensor, b: Tensor, w: Tensor): Tensor {
  return add(mul(a, w), mul(b, sub(1, w)));
}

function queries(layer: AttentionLayer): number {
  const { height, width } = layer;
  if (typeof height !== 'number' || typeof width !== 'number') throw new Error('attention control needs a UNet traced at a fixed size');
  return height * width;
}

/**
 * Traces the UNet with `hook` at one fixed size and batch (the hook decides per layer from the
 * layer's resolution) and `tokens` context positions, and compiles it: inputs sample, timestep, encoder_hidden_states and the
 * hook's own; outputs noise_pred and the hook's. The pipeline keeps the session for the next job
 * of the same shape (tracing again is cheap).
 */
export async function compileControlledUNet(sd: StableDiffusion, shape: Shape4, hook: ControlledHook, tokens = sd.contextShape[0]): Promise<CompiledGraph> {
  const { inputs, noise } = traceUNet(sd.components.unet, shape, [tokens, sd.contextShape[1]], { hook, inputs: hook.inputs });
  return sd.keep(compile({ inputs, outputs: { noise_pred: noise, ...hook.outputs() }, trainable: sd.trainable }, sd.run));
}

