// diffusers' TextTimeEmbedding, the UNet's `add_embedding` when its config says addition_embed_type
// "text": the whole caption, pooled into one vector and added to the time embedding, so every
// resnet block sees what the prompt asks for, beside the cross-attention that reads it word by word.
//
//   states [B, L, C] ─ norm1 ─ pool ─ proj ─ norm2 ─► [B, time embedding width]
//
// The pool (diffusers' AttentionPooling) is one multi-head attention query, the states' mean plus a
// learnt positional vector, over [that query, the L states]; no output projection.

import { LayerNorm, Linear, Module, type Parameter, type RandomSource, type Tensor, add, attentionProbs, concat, joinName, matmul, mean, mergeHeads, reshape, splitHeads } from '../engine/index.ts';

class AttentionPooling extends Module {
  readonly positional_embedding: Parameter;
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;

  constructor(name: string, readonly width: number, readonly heads: number) {
    super(name);
    if (width % heads) throw new Error(`unet: the text pooling's ${width} channels do not split into ${heads} heads`);
    this.positional_embedding = this.param('positional_embedding', [1, width]);
    this.q_proj = new Linear(joinName(name, 'q_proj'), width, width);
    this.k_proj = new Linear(joinName(name, 'k_proj'), width, width);
    this.v_proj = new Linear(joinName(name, 'v_proj'), width, width);
  }

  forward(states: Tensor): Tensor {
    const query = add(mean(states, 1, true), this.positional_embedding.tensor);
    const all = concat([query, states], 1);
    const probs = attentionProbs(this.q_proj.forward(query), this.k_proj.forward(all), this.heads, 1 / Math.sqrt(this.width / this.heads));
    const pooled = mergeHeads(matmul(probs, splitHeads(this.v_proj.forward(all), this.heads)));
    return reshape(pooled, [states.shape[0], this.width]);
  }

  override init(rng: RandomSource): void {
    super.init(rng);
    // torch.randn(1, C) / √C, as diffusers initialises it.
    const p = rng.randn(this.width);
    for (let i = 0; i < p.length; i++) p[i] /= Math.sqrt(this.width);
    this.positional_embedding.setValue(p);
  }
}

export class TextPoolEmbedding extends Module {
  readonly norm1: LayerNorm;
  readonly pool: AttentionPooling;
  readonly proj: Linear;
  readonly norm2: LayerNorm;

  constructor(name: string, textWidth: number, timeWidth: number, heads: number) {
    super(name);
    this.norm1 = new LayerNorm(joinName(name, 'norm1'), textWidth);
    this.pool = new AttentionPooling(joinName(name, 'pool'), textWidth, heads);
    this.proj = new Linear(joinName(name, 'proj'), textWidth, timeWidth);
    this.norm2 = new LayerNorm(joinName(name, 'norm2'), timeWidth);
  }

  /**
   * Makes the pooled caption add nothing (its last LayerNorm's scale and shift zero), so a trained
   * UNet given this path draws as before and training grows it from there: the scale still gets a
   * gradient (the normalised projection), though a small one (recipes/default-v10: rms 3e-3 after
   * 3,000 steps at lr 1e-4).
   */
  startAsNoOp(): void {
    this.norm2.weight.setValue(new Float32Array(this.norm2.weight.size));
    this.norm2.bias.setValue(new Float32Array(this.norm2.bias.size));
  }

  /** states [B, L, textWidth] → [B, timeWidth] */
  forward(states: Tensor): Tensor {
    return this.norm2.forward(this.proj.forward(this.pool.forward(this.norm1.forward(states))));
  }
}
