// What picture sizes a model can make, checked before any work:
//  - sides must be multiples of the VAE's downscale f (the UNet takes any latent size: its
//    stride-2 convs round up and its upsamplers meet the skips at their sizes);
//  - attention memory: every self-attention over the H·W latent positions materialises a score
//    matrix [batch, heads, N, N] in float32 (ONNX Runtime's CPU attention does), so memory grows
//    with the fourth power of the side. The largest such matrix, in the UNet (batch doubled by
//    classifier-free guidance) or in the VAE's mid block, may use at most half the machine's
//    memory, or $NURI_MAX_ATTENTION_GB gigabytes when set.

import { totalmem } from 'node:os';
import type { UNetConfig } from './checkpoint/unet-config.ts';
import { type VaeConfig, vaeDownscale } from './vae.ts';

export interface PictureSize {
  batch: number;
  width: number;
  height: number;
  /** Classifier-free guidance runs the UNet on twice the batch. */
  guided: boolean;
}

/** The side multiple a model needs: the VAE's downscale f (8 for Stable Diffusion). */
export function sizeMultiple(vae: VaeConfig): number {
  return vaeDownscale(vae);
}

/** The attention-score budget in bytes: $NURI_MAX_ATTENTION_GB, else half the machine's memory. */
export function attentionBudget(): number {
  const gb = Number(process.env.NURI_MAX_ATTENTION_GB);
  return Number.isFinite(gb) && gb > 0 ? gb * 2 ** 30 : totalmem() / 2;
}

interface AttentionSite {
  where: string;
  batch: number;
  heads: number;
  tokens: number;
}

/** The self-attentions a generation of this size runs, with their sizes. */
function attentionSites(unet: UNetConfig, vae: VaeConfig, size: PictureSize): AttentionSite[] {
  const f = vaeDownscale(vae);
  const latentTokens = (size.width / f) * (size.height / f);
  const unetBatch = size.guided ? 2 * size.batch : size.batch;
  const levels = unet.block_out_channels.length;
  const sites: AttentionSite[] = [];
  for (let level = 0, h = size.height / f, w = size.width / f; level < levels; level++, h = Math.ceil(h / 2), w = Math.ceil(w / 2)) {
    const attends = unet.down_block_types[level].startsWith('CrossAttn') || unet.up_block_types[levels - 1 - level].startsWith('CrossAttn') || level === levels - 1;
    if (attends) sites.push({ where: `UNet level ${level}`, batch: unetBatch, heads: unet.num_attention_heads[level], tokens: h * w });
  }
  if (vae.mid_block_add_attention) sites.push({ where: "the VAE's mid block", batch: size.batch, heads: 1, tokens: latentTokens });
  return sites;
}

const bytes = (s: AttentionSite) => s.batch * s.heads * s.tokens * s.tokens * 4;
const gigabytes = (n: number) => `${(n / 2 ** 30).toFixed(n < 2 ** 30 ? 2 : 1)} GB`;

/** Throws, saying the rule and the largest square size that fits, when a size is invalid or too large. */
export function checkPictureSize(unet: UNetConfig, vae: VaeConfig, size: PictureSize): void {
  const { width, height, batch } = size;
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`batch must be a positive integer, got ${batch}`);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) throw new Error(`width and height must be positive integers, got ${width}×${height}`);
  const multiple = sizeMultiple(vae);
  if (width % multiple || height % multiple) throw new Error(`width and height must be multiples of ${multiple} for this model (the VAE's downscale), got ${width}×${height}`);
  const budget = attentionBudget();
  const largest = attentionSites(unet, vae, size).reduce((a, b) => (bytes(b) > bytes(a) ? b : a));
  const need = bytes(largest);
  if (need <= budget) return;
  // Scores grow with side⁴: the largest square that fits, rounded down to the multiple.
  const side = Math.sqrt(width * height) * (budget / need) ** 0.25;
  const fits = Math.max(multiple, Math.floor(side / multiple) * multiple);
  throw new Error(
    `${width}×${height} (batch ${batch}) is too large: the attention at ${largest.where} needs ${gigabytes(need)} for its scores ` +
      `([${largest.batch}, ${largest.heads}, ${largest.tokens}, ${largest.tokens}] float32), over the limit of ${gigabytes(budget)} ` +
      `(half this machine's memory, or $NURI_MAX_ATTENTION_GB); about ${fits}×${fits} fits at this batch`,
  );
}
