// Bounds on every size a config may ask for. A config is read before any weight, and a size such
// as `layers_per_block: 1e9` would otherwise build modules until memory runs out. The limits sit
// far above every released Stable Diffusion / CLIP model (SD-XL's UNet: 3 levels, 10 transformer
// layers, 2048-wide; CLIP ViT-bigG: 32 layers, 1280 wide, 20 heads) and far below what hangs.

export const CONFIG_BOUNDS = {
  /** Resolution levels (block_out_channels entries). */
  levels: 8,
  /** Resnets per block, transformer blocks per attention, encoder layers. */
  layers: 64,
  /** Any channel count or hidden width. */
  channels: 16384,
  heads: 256,
  /** Token / position table rows. */
  vocabulary: 1 << 20,
  positions: 4096,
  /** sample_size, in latent or image pixels. */
  sampleSize: 16384,
  kernel: 15,
  // Scheduler training timesteps are bounded where the scheduler config is read (MAX_TRAIN_TIMESTEPS).
} as const;

/** A positive integer ≤ `max`, or an error naming the field and the bound. */
export function boundedInt(value: unknown, field: string, max: number, min = 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(`"${field}" must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * A finite number in (low, high] — or [low, high] with `lowIncluded` — for epsilons and scale
 * factors, where 0, negatives and extremes give NaN or overflow in the first step.
 */
export function boundedNumber(value: unknown, field: string, low: number, high: number, lowIncluded = false): number {
  const aboveLow = typeof value === 'number' && (lowIncluded ? value >= low : value > low);
  if (typeof value !== 'number' || !Number.isFinite(value) || !aboveLow || value > high) {
    const range = lowIncluded ? `from ${low} to ${high}` : `above ${low} and at most ${high}`;
    throw new Error(`"${field}" must be a number ${range}, got ${JSON.stringify(value)}`);
  }
  return value;
}
