// Low-rank adaptation (LoRA, Hu et al. 2021) of one linear layer: y = W·x + b + Σ m·B(A(x)) with
// A [rank, in], B [out, rank] and m = scale·alpha/rank. The base layer keeps its checkpoint
// weights; adapters are extra branches it adds to its output. Layers that may be adapted (the
// attention projections of the UNet and the text encoder) are built as LoraLinear, so injecting a
// LoRA is pushing an adapter onto a list rather than swapping or patching a module's forward.

import { Linear, Module, type Parameter, type RandomSource, type Tensor, add, linear, mul } from '../engine/index.ts';

export class LoraAdapter extends Module {
  /** A, "lora_down": [rank, in]. */
  readonly down: Parameter;
  /** B, "lora_up": [out, rank]. */
  readonly up: Parameter;

  /**
   * `name` is the adapted layer's; `tag` tells adapters on one layer apart (PEFT's adapter name).
   * `scale` is the user's strength (`--lora FILE:WEIGHT`), applied on top of alpha/rank.
   */
  constructor(
    name: string,
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly rank: number,
    readonly alpha: number,
    public scale = 1,
    tag = 'default',
  ) {
    super(name);
    if (!Number.isInteger(rank) || rank < 1) throw new RangeError(`LoRA rank must be a positive integer, got ${rank}`);
    this.down = this.param(`lora_A.${tag}.weight`, [rank, inFeatures]);
    this.up = this.param(`lora_B.${tag}.weight`, [outFeatures, rank]);
  }

  /** What multiplies B·A: the user's scale times alpha/rank. */
  get multiplier(): number {
    return (this.scale * this.alpha) / this.rank;
  }

  /** x [..., in] → the branch's contribution [..., out]. */
  forward(x: Tensor): Tensor {
    const delta = linear(linear(x, this.down.tensor), this.up.tensor);
    return this.multiplier === 1 ? delta : mul(delta, this.multiplier);
  }

  /**
   * A Kaiming-uniform as PEFT and nn.Linear use (bound 1/√in), B zero: the adapted layer starts out
   * exactly equal to the base, and B's first gradient is non-zero because A is.
   */
  override init(rng: RandomSource): void {
    const bound = 1 / Math.sqrt(this.inFeatures);
    const a = rng.rand(this.down.size);
    for (let i = 0; i < a.length; i++) a[i] = (a[i] * 2 - 1) * bound;
    this.down.setValue(a);
    this.up.setValue(new Float32Array(this.up.size));
  }
}

export class LoraLinear extends Linear {
  /** Branches added to the output, in order. Owned by whoever injected them (a LoraNetwork). */
  readonly adapters: LoraAdapter[] = [];

  override forward(x: Tensor): Tensor {
    let y = super.forward(x);
    for (const adapter of this.adapters) y = add(y, adapter.forward(x));
    return y;
  }

  /** The checkpoint's own weights only: adapters are saved, trained and removed on their own. */
  override parameters(): Parameter[] {
    return this.bias ? [this.weight, this.bias] : [this.weight];
  }
}
