// Training images encoded once. The VAE is frozen in every fine-tuning method here, so each image's
// latent distribution (mean, std), and its mirror image's, is computed before the first step; a
// step then only samples z = mean + std·ε from the training Generator and scales it, exactly what
// encoding the image every step would give, at none of the cost.

import type { RandomSource } from '../engine/index.ts';
import { flipHorizontal } from '../data/folder.ts';
import { type RgbImage, imageToTensor } from '../io/image.ts';
import { type Shape4, type VaeRunner, scaleLatents } from '../models/vae-runner.ts';

interface Distribution {
  mean: Float32Array;
  std: Float32Array;
}

export class LatentCache {
  private constructor(
    private readonly vae: VaeRunner,
    /** Per image: [as is, mirrored] (the mirror only when flips were asked for). */
    private readonly entries: Distribution[][],
    /** [C, h, w] of one image's latents. */
    readonly latentShape: [number, number, number],
  ) {}

  /** Encodes each image (and its mirror image with `flips`), one at a time to bound memory. */
  static async encode(vae: VaeRunner, images: readonly RgbImage[], flips: boolean): Promise<LatentCache> {
    if (!images.length) throw new Error('no training images');
    const { width, height } = images[0];
    const entries: Distribution[][] = [];
    let latentShape: [number, number, number] = [0, 0, 0];
    for (const image of images) {
      const views = flips ? [image, flipHorizontal(image)] : [image];
      const encoded: Distribution[] = [];
      for (const view of views) {
        const out = await vae.encodeImage(imageToTensor([view], '-1..1'), [1, 3, height, width]);
        encoded.push({ mean: out.mean, std: out.std });
        latentShape = [out.shape[1], out.shape[2], out.shape[3]];
      }
      entries.push(encoded);
    }
    return new LatentCache(vae, entries, latentShape);
  }

  get count(): number {
    return this.entries.length;
  }

  /** Scaled latents [B, C, h, w] for the items (each mirrored where `mirrored` says), sampled with `rng`. */
  sample(indices: readonly number[], rng: RandomSource, mirrored: readonly boolean[] = []): Float32Array {
    const size = this.latentShape.reduce((a, b) => a * b, 1);
    const eps = rng.randn(indices.length * size);
    const z = new Float32Array(indices.length * size);
    indices.forEach((index, b) => {
      const views = this.entries[index];
      const { mean, std } = views[mirrored[b] === true && views.length > 1 ? 1 : 0];
      for (let i = 0; i < size; i++) z[b * size + i] = mean[i] + std[i] * eps[b * size + i];
    });
    const shape: Shape4 = [indices.length, ...this.latentShape];
    return scaleLatents(z, shape, this.vae.config);
  }
}
