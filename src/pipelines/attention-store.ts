// AttentionStore: cross-attention maps captured while sampling — for each text token, where in the
// picture the UNet looked for it. In the graph, the maps of the chosen layers (one query resolution,
// the chosen UNet places) are averaged over heads and layers into one output per step; here they
// are summed over steps, so the average over the whole run is one division away.

import { type Tensor, add, mean, mul, slice } from '../engine/index.ts';
import type { AttentionCall, AttentionLayer, AttentionPlace } from '../models/unet.ts';
import type { AttentionObserver, ControlledHook } from './attention-control.ts';

export interface AttentionStoreOptions {
  /** The query grid of the layers to keep (latent size / 4 is the reference's 16×16 at 512 px). */
  height: number;
  width: number;
  /** Batch rows [start, end) to keep, e.g. the conditional half of a guided batch. */
  rows: readonly [number, number];
  places?: readonly AttentionPlace[];
  /** The graph output's name. */
  name?: string;
}

export class AttentionStore implements ControlledHook, AttentionObserver {
  readonly inputs: Tensor[] = [];
  readonly name: string;
  readonly places: readonly AttentionPlace[];
  private readonly maps: Tensor[] = [];
  /** Σ over recorded steps of the per-step maps, [rows, height·width, tokens]. */
  private total: Float32Array | undefined;
  steps = 0;

  constructor(readonly options: AttentionStoreOptions) {
    this.name = options.name ?? 'attention_maps';
    this.places = options.places ?? ['down', 'up'];
  }

  /** As a hook on its own: observes and leaves the probabilities alone. */
  attention(call: AttentionCall): undefined {
    this.record(call, call.probs);
    return undefined;
  }

  /** Only the cross-attention layers at the store's resolution and places: the rest stay fused. */
  wants(layer: AttentionLayer): boolean {
    const { height, width } = this.options;
    return layer.isCross && this.places.includes(layer.place) && layer.height === height && layer.width === width;
  }

  record(call: AttentionCall, probs: Tensor): void {
    if (!this.wants(call)) return;
    const { rows } = this.options;
    this.maps.push(mean(slice(probs, 0, rows[0], rows[1]), 1)); // [rows, Lq, tokens], the heads' mean
  }

  /** Number of layers traced so far that the store keeps. */
  get layers(): number {
    return this.maps.length;
  }

  outputs(): Record<string, Tensor> {
    if (!this.maps.length) {
      throw new Error(`attention store: no cross-attention layer at ${this.options.height}×${this.options.width} in ${this.places.join('/')} of this UNet`);
    }
    return { [this.name]: mul(this.maps.reduce((a, b) => add(a, b)), 1 / this.maps.length) };
  }

  /** Adds one step's output (the graph's `name` output). */
  accumulate(outputs: Record<string, { data: unknown }>): void {
    const step = outputs[this.name]?.data as Float32Array | undefined;
    if (!step) throw new Error(`attention store: the UNet returned no "${this.name}"`);
    if (!this.total) this.total = new Float32Array(step.length);
    for (let i = 0; i < step.length; i++) this.total[i] += step[i];
    this.steps++;
  }

  /** The sum over steps so far, [rows, height·width, tokens]. */
  get sum(): Float32Array {
    if (!this.total) throw new Error('attention store: nothing recorded yet');
    return this.total;
  }

  /** The maps averaged over heads, layers and steps, [rows, height·width, tokens]. */
  average(): Float32Array {
    return this.sum.map((v) => v / this.steps);
  }
}

/** One token's map out of [rows, Lq, tokens] maps: row `row`, token `token`, [Lq]. */
export function tokenAttention(maps: Float32Array, row: number, token: number, queries: number, tokens: number): Float32Array {
  const out = new Float32Array(queries);
  const base = row * queries * tokens;
  for (let q = 0; q < queries; q++) out[q] = maps[base + q * tokens + token];
  return out;
}
