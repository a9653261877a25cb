// AttentionStore: cross-attention maps captured while sampling — for each text token, where in the
// picture the UNet looked for it. In the graph, the maps of the chosen layers (one query resolution,
// the chosen UNet places) are averaged over heads and layers into one output per step; here they
// are summed over steps, so the average over the whole run is one division away.
//
// Which resolution to keep depends on the UNet: `attentionMapGrid` picks it from the layers it has
// (Stable Diffusion's 16×16 at 512 px; the finest grid of a small UNet whose coarse levels have no
// cross-attention).

import { type Tensor, add, mean, mul, slice } from '../engine/index.ts';
import type { AttentionCall, AttentionLayer, AttentionPlace, UNetConfig } from '../models/unet.ts';
import type { AttentionObserver, ControlledHook } from './attention-control.ts';

/** Maps narrower than this are too coarse to show or mask an object, when the UNet has wider ones. */
const MIN_MAP_SIDE = 16;

type Grid = [height: number, width: number];

/**
 * The query grids of the UNet's cross-attention layers in `places` for h×w latents, finest first,
 * each once. Level i of a UNet works at the latents halved i times (rounded up, as a stride-2
 * convolution with padding 1 does); up block j at level n−1−j; the mid block at the last level.
 */
export function crossAttentionGrids(config: Pick<UNetConfig, 'down_block_types' | 'up_block_types'>, latentHeight: number, latentWidth: number, places: readonly AttentionPlace[] = ['down', 'up']): Grid[] {
  const levels = config.down_block_types.length;
  const grid = (level: number): Grid => {
    let [h, w] = [latentHeight, latentWidth];
    for (let i = 0; i < level; i++) [h, w] = [Math.ceil(h / 2), Math.ceil(w / 2)];
    return [h, w];
  };
  const found = new Set<number>();
  config.down_block_types.forEach((type, level) => places.includes('down') && type.startsWith('CrossAttn') && found.add(level));
  config.up_block_types.forEach((type, j) => places.includes('up') && type.startsWith('CrossAttn') && found.add(levels - 1 - j));
  if (places.includes('mid')) found.add(levels - 1); // UNetMidBlock2DCrossAttn, the only mid block
  return [...found].sort((a, b) => a - b).map(grid);
}

/**
 * The grid to read attention maps at: the coarsest of the UNet's cross-attention grids (in
 * `places`) still at least 16 wide — the reference's 16×16 maps of a 64×64 latent — or, when none
 * is that wide, the finest it has (8×8 for the default model's 8×8 latents, whose 2×2 level has no
 * cross-attention).
 */
export function attentionMapGrid(config: Pick<UNetConfig, 'down_block_types' | 'up_block_types'>, latentHeight: number, latentWidth: number, places: readonly AttentionPlace[] = ['down', 'up']): Grid {
  const grids = crossAttentionGrids(config, latentHeight, latentWidth, places);
  if (!grids.length) throw new Error(`this UNet has no cross-attention layers in ${places.join('/')}`);
  const wide = grids.filter(([h, w]) => Math.min(h, w) >= MIN_MAP_SIDE);
  return wide.length ? wide[wide.length - 1] : grids[0];
}

export interface AttentionStoreOptions {
  /** The query grid of the layers to keep (see `attentionMapGrid`). */
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
