// How well a VAE reconstructs images: PSNR through the posterior mean (the encoder's mean decoded,
// the decoder's output clamped to the image range), over a data set's images in chunks. Used to
// choose the VAE of the default model and to report the trained VAE's quality on held-out images.
import type { ImageFolderDataset } from '../data/folder.ts';
import type { RunOptions } from '../engine/index.ts';
import { VaeRunner } from '../models/vae-runner.ts';
import type { AutoencoderKL } from '../models/vae.ts';

export interface ReconstructionQuality {
  /** 10·log10(1 / MSE) with pixels in [0, 1], the MSE over every pixel of every image. */
  psnr: number;
  /** Mean absolute error in [0, 1] units. */
  meanAbsoluteError: number;
  images: number;
}

/** PSNR of mean reconstructions over the whole data set (pixels in [0, 1]). */
export async function reconstructionQuality(vae: AutoencoderKL, data: Pick<ImageFolderDataset, 'length' | 'batch'>, run?: RunOptions, chunk = 32): Promise<ReconstructionQuality> {
  const runner = new VaeRunner(vae, run);
  let squared = 0;
  let absolute = 0;
  let count = 0;
  for (let start = 0; start < data.length; start += chunk) {
    const indices = Array.from({ length: Math.min(chunk, data.length - start) }, (_, i) => start + i);
    const { pixels, shape } = data.batch(indices);
    const enc = await runner.encodeImage(pixels, shape);
    const dec = await runner.decodeRaw(enc.mean, enc.shape);
    for (let i = 0; i < pixels.length; i++) {
      const diff = (Math.min(1, Math.max(-1, dec.data[i])) - pixels[i]) / 2; // [-1, 1] → [0, 1] units
      squared += diff * diff;
      absolute += Math.abs(diff);
    }
    count += pixels.length;
  }
  if (count === 0) throw new Error('reconstruction quality: the data set is empty');
  return { psnr: 10 * Math.log10(1 / (squared / count)), meanAbsoluteError: absolute / count, images: data.length };
}
