// An exponential moving average of weights, kept in TS beside the optimiser: after each step
// shadow ← decay·shadow + (1 − decay)·weight. Sampling from the average is usually better than
// from the last weights; the average is checkpointed with the rest.

import type { Parameter } from '../engine/index.ts';

export class EmaWeights {
  private readonly shadow: Float32Array[];
  /** Updates applied so far (the warm-up below depends on it, so it is checkpointed). */
  updates = 0;

  /**
   * `warmup` uses min(decay, (1 + n)/(10 + n)) for update n, so early averages are not dominated by
   * the initial weights (the "EMA warm-up" diffusers' EMAModel applies).
   */
  constructor(
    readonly params: readonly Parameter[],
    readonly decay = 0.9999,
    readonly warmup = true,
  ) {
    if (!(decay > 0 && decay < 1)) throw new Error(`EMA decay must be in (0, 1), got ${decay}`);
    this.shadow = params.map((p) => new Float32Array(p.value()));
  }

  update(): void {
    const n = this.updates++;
    const d = this.warmup ? Math.min(this.decay, (1 + n) / (10 + n)) : this.decay;
    this.params.forEach((p, k) => {
      const w = p.value();
      const s = this.shadow[k];
      for (let i = 0; i < s.length; i++) s[i] = d * s[i] + (1 - d) * w[i];
    });
  }

  /** The averaged value of each parameter, by name. */
  values(): Map<string, Float32Array> {
    return new Map(this.params.map((p, k) => [p.name, this.shadow[k]]));
  }

  load(values: ReadonlyMap<string, Float32Array>, updates: number): void {
    this.params.forEach((p, k) => {
      const v = values.get(p.name);
      if (!v || v.length !== p.size) throw new Error(`EMA state has no matching values for ${p.name}`);
      this.shadow[k].set(v);
    });
    this.updates = updates;
  }
}
