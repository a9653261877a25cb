// Batches of item indices in a seeded order: each epoch is a fresh permutation drawn from the
// training Generator. The position (epoch, permutation, cursor) is small JSON, saved in training
// checkpoints so a resumed run sees the same batches the uninterrupted one would have.

import type { RandomSource } from '../engine/index.ts';

export interface BatchOrderState {
  epoch: number;
  order: number[];
  cursor: number;
}

export class ShuffledBatches {
  private epoch = 0;
  private order: number[] = [];
  private cursor = 0;

  /** `count` items; with `shuffle` false the order is 0…count−1 every epoch. */
  constructor(
    readonly count: number,
    readonly batchSize: number,
    readonly shuffle = true,
  ) {
    if (!Number.isInteger(count) || count <= 0) throw new Error(`a data set needs at least one item, got ${count}`);
    if (!Number.isInteger(batchSize) || batchSize <= 0) throw new Error(`batch size must be a positive integer, got ${batchSize}`);
  }

  /** Completed passes over the data. */
  get epochs(): number {
    return this.epoch;
  }

  /**
   * The next `batchSize` indices. A batch that runs past the end of an epoch continues into the
   * next one, so every batch is full (the step graph has a fixed batch) and no item is skipped.
   */
  next(rng: RandomSource): number[] {
    const batch: number[] = [];
    while (batch.length < this.batchSize) {
      if (this.cursor >= this.order.length) this.startEpoch(rng);
      batch.push(this.order[this.cursor++]);
    }
    return batch;
  }

  private startEpoch(rng: RandomSource): void {
    if (this.order.length) this.epoch++;
    this.order = Array.from({ length: this.count }, (_, i) => i);
    if (this.shuffle) {
      // Fisher–Yates
      for (let i = this.count - 1; i > 0; i--) {
        const j = rng.randint(i + 1);
        [this.order[i], this.order[j]] = [this.order[j], this.order[i]];
      }
    }
    this.cursor = 0;
  }

  state(): BatchOrderState {
    return { epoch: this.epoch, order: [...this.order], cursor: this.cursor };
  }

  loadState(state: BatchOrderState): void {
    if (state.order.length && state.order.length !== this.count) {
      throw new Error(`the checkpoint's data order covers ${state.order.length} items but the data set has ${this.count}`);
    }
    this.epoch = state.epoch;
    this.order = [...state.order];
    this.cursor = state.cursor;
  }
}
