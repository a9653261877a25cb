// The guidance-scale embedding of LCM-distilled UNets (Luo et al. 2023; diffusers'
// get_guidance_scale_embedding, after VDM). Such a UNet (config `time_cond_proj_dim`) was distilled
// with the guidance scale as an input, so it samples without classifier-free guidance's
// unconditional pass: w = guidance − 1 is embedded like a timestep — w·1000 times the frequencies
// exp(−ln(10000)·i / (half − 1)), sines then cosines, a zero appended when the width is odd — and
// reaches the timestep embedding through time_embedding.cond_proj.

/**
 * [rows, dim]: the embedding of `w` repeated on each row. Every step is rounded to float32 as torch
 * computes it (w·1000 reaches thousands, where float32 arguments move sin and cos by ~1e-4).
 */
export function guidanceScaleEmbedding(w: number, dim: number, rows = 1): Float32Array {
  const half = Math.floor(dim / 2);
  // half = 1 divides by zero in the reference (its embedding is NaN).
  if (!Number.isInteger(dim) || half < 2) throw new Error(`guidance scale embedding: width ${dim} is too small (at least 4)`);
  if (!Number.isFinite(w)) throw new Error(`guidance scale embedding: w must be a finite number, got ${w}`);
  const scaled = Math.fround(Math.fround(w) * 1000);
  const step = Math.fround(Math.fround(Math.log(10000)) / (half - 1));
  const row = new Float32Array(dim); // an odd width leaves its last entry 0
  for (let i = 0; i < half; i++) {
    const arg = Math.fround(scaled * Math.fround(Math.exp(Math.fround(-i * step))));
    row[i] = Math.sin(arg);
    row[half + i] = Math.cos(arg);
  }
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) out.set(row, r * dim);
  return out;
}
