// A cheap look at latents mid-sampling, with no decoder: each latent pixel becomes one RGB pixel by a
// fixed linear map fitted to SD 1.x's VAE (the widely used latent→RGB factors, as in ComfyUI's SD15
// latent format). Works on the latents the diffusion model sees (already × scaling_factor). Output
// is 1/8 of the image's size; enlarge it for display.

/** rgb = latent · LATENT_RGB_FACTORS + bias, in [-1, 1] before mapping to [0, 1]. Rows: latent channels. */
export const SD1_LATENT_RGB_FACTORS: readonly (readonly [number, number, number])[] = [
  [0.3512, 0.2297, 0.3227],
  [0.325, 0.4974, 0.235],
  [-0.2829, 0.1762, 0.2721],
  [-0.212, -0.2616, -0.7177],
];

export interface LatentPreviewOptions {
  /** One row of [R, G, B] per latent channel; SD 1.x's by default. */
  factors?: readonly (readonly [number, number, number])[];
  bias?: readonly [number, number, number];
}

/** Same layout as io's RgbImage: [3, height, width] in [0, 1]. */
export interface PreviewImage {
  width: number;
  height: number;
  channels: 3;
  data: Float32Array;
}

/** latents [B, C, h, w] (NCHW) → one h×w RGB preview per batch item. */
export function latentPreview(latents: Float32Array, shape: readonly [number, number, number, number], options: LatentPreviewOptions = {}): PreviewImage[] {
  const factors = options.factors ?? SD1_LATENT_RGB_FACTORS;
  const bias = options.bias ?? [0, 0, 0];
  const [batch, channels, height, width] = shape;
  if (channels !== factors.length) throw new Error(`latentPreview: ${channels} latent channels but ${factors.length} factor rows`);
  if (latents.length !== batch * channels * height * width) throw new Error(`latentPreview: ${latents.length} values do not fill shape [${shape.join(', ')}]`);
  const plane = height * width;
  return Array.from({ length: batch }, (_, n) => {
    const data = new Float32Array(3 * plane);
    const base = n * channels * plane;
    for (let rgb = 0; rgb < 3; rgb++) {
      for (let i = 0; i < plane; i++) {
        let v = bias[rgb];
        for (let c = 0; c < channels; c++) v += latents[base + c * plane + i] * factors[c][rgb];
        data[rgb * plane + i] = Math.min(1, Math.max(0, (v + 1) / 2));
      }
    }
    return { width, height, channels: 3 as const, data };
  });
}
