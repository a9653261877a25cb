// The KL-regularised autoencoder objective of latent diffusion (Rombach et al. 2022, without the
// perceptual and adversarial terms): sample z = mean + std·ε from the encoder's Gaussian, decode,
// and add a reconstruction error to a weighted KL divergence from N(0, 1).

import { Tensor, abs, add, mean, mul, sub, type Dim } from '../engine/index.ts';
import type { AutoencoderKL } from '../models/vae.ts';

export type ReconstructionLoss = 'l1' | 'l2';

export interface VaeLossOptions {
  reconstruction?: ReconstructionLoss;
  /** Weight of the KL term (LDM uses ~1e-6 with its perceptual loss; larger keeps latents near N(0, 1)). */
  klWeight?: number;
}

export interface VaeLoss {
  loss: Tensor;
  reconstruction: Tensor;
  kl: Tensor;
  /** The decoded images [B, 3, H, W]. */
  decoded: Tensor;
}

/** Graph inputs: `image` [B, 3, H, W] in [-1, 1] and `eps` [B, latent, H/f, W/f] ~ N(0, 1). */
export function vaeInputs(vae: AutoencoderKL, batch: Dim, size: number): { image: Tensor; eps: Tensor } {
  const f = 2 ** (vae.config.block_out_channels.length - 1);
  if (size % f) throw new Error(`VAE training size must be a multiple of ${f}, got ${size}`);
  return {
    image: Tensor.input('image', [batch, vae.config.in_channels, size, size]),
    eps: Tensor.input('eps', [batch, vae.config.latent_channels, size / f, size / f]),
  };
}

/**
 * Reconstruction (mean absolute or squared error per element) + klWeight · KL, the KL of
 * N(mean, std²) from N(0, 1) averaged over latent elements: ½·mean(mean² + std² − 1 − logvar).
 */
export function vaeLoss(vae: AutoencoderKL, image: Tensor, eps: Tensor, options: VaeLossOptions = {}): VaeLoss {
  const klWeight = options.klWeight ?? 1e-6;
  const posterior = vae.encode(image);
  const z = add(posterior.mean, mul(posterior.std, eps));
  const decoded = vae.decode(z);
  const err = sub(decoded, image);
  const reconstruction = mean(options.reconstruction === 'l2' ? mul(err, err) : abs(err));
  const variance = mul(posterior.std, posterior.std);
  const kl = mul(mean(sub(sub(add(mul(posterior.mean, posterior.mean), variance), 1), posterior.logvar)), 0.5);
  return { loss: add(reconstruction, mul(kl, klWeight)), reconstruction, kl, decoded };
}
