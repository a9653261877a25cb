// Floating-point work of the three SD model calls, counted from the traced graphs: each component is
// traced at concrete sizes and every matrix product and convolution in the graph is counted as
// 2 FLOPs per multiply–add. Norms, softmax, activations and other elementwise ops are not counted
// (a few per cent of the total, and memory-bound): the figure is the work the FMA units must do.

import { join } from 'node:path';
import { type Tensor, Tensor as T } from '../src/engine/index.ts';
import { AutoencoderTiny } from '../src/models/autoencoder-tiny.ts';
import { parseAutoencoderTinyConfig } from '../src/models/checkpoint/autoencoder-tiny-config.ts';
import { loadClipTextModel, loadUNet, loadVae } from '../src/models/checkpoint/components.ts';
import { parseVaeConfig } from '../src/models/checkpoint/vae-config.ts';
import type { UNet2DConditionModel } from '../src/models/unet.ts';
import { AutoencoderKL } from '../src/models/vae.ts';
import { traceUNet } from '../src/pipelines/stable-diffusion.ts';
import { SD15_VAE_CONFIG, TAESD_CONFIG } from './random-checkpoint.ts';

function concrete(t: Tensor): number[] {
  return t.shape.map((d) => {
    if (typeof d !== 'number') throw new Error(`countFlops: ${t} has a symbolic size; trace at concrete sizes`);
    return d;
  });
}

const product = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

/** Multiply–adds × 2 of one op, given its inputs' and output's concrete shapes; 0 for other ops. */
function opFlops(type: string, inputs: readonly Tensor[], out: Tensor): number {
  switch (type) {
    case 'MatMul': {
      const a = concrete(inputs[0]);
      return 2 * product(concrete(out)) * a[a.length - 1];
    }
    case 'Gemm':
      return 2 * product(concrete(out)) * concrete(inputs[0])[1];
    case 'Conv': {
      // every output value: Cin/groups · kh · kw multiply–adds
      const w = concrete(inputs[1]);
      return 2 * product(concrete(out)) * w[1] * w[2] * w[3];
    }
    case 'ConvTranspose': {
      // every input value is scattered through Cout/groups · kh · kw weights
      const w = concrete(inputs[1]);
      return 2 * product(concrete(inputs[0])) * w[1] * w[2] * w[3];
    }
    case 'Attention': {
      // q·kᵀ and P·v over all heads: [B, Lq, C] × [B, Lk, C], [B, Lq, Lk] × [B, Lk, Cv]
      const [b, lq, c] = concrete(inputs[0]);
      const [, lk, cv] = concrete(inputs[2]);
      return 2 * b * lq * lk * (c + cv);
    }
    default:
      return 0;
  }
}

/** FLOPs of everything the outputs depend on, by op type. */
export function countFlops(outputs: readonly Tensor[]): { total: number; byOp: Record<string, number> } {
  const seen = new Set<Tensor>();
  const stack = [...outputs];
  const byOp: Record<string, number> = {};
  let total = 0;
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    if (t.origin.kind !== 'op') continue;
    const { spec, inputs } = t.origin.node;
    const flops = opFlops(spec.type, inputs, t);
    if (flops) {
      byOp[spec.type] = (byOp[spec.type] ?? 0) + flops;
      total += flops;
    }
    stack.push(...inputs);
  }
  return { total, byOp };
}

export interface StageFlops {
  /** The text encoder on `prompts` sequences of 77 tokens. */
  textEncoder: number;
  /** One UNet call at batch 2 (a guided step: conditional and unconditional halves). */
  unetStep: number;
  /** The VAE decoder on one latent. */
  vaeDecode: number;
}

/** One UNet call at batch 2 on size² pictures with context [tokens, width] (and SDXL's added conditions when it has them). */
export function unetStepFlops(unet: UNet2DConditionModel, size: number, context: [number, number]): number {
  const f = size / 8;
  return countFlops([traceUNet(unet, [2, unet.config.in_channels, f, f], context).noise]).total;
}

/** A decoder of latents [1, channels, size/8, size/8]. */
function decoderFlops(decode: (latents: Tensor) => Tensor, channels: number, size: number): number {
  return countFlops([decode(T.input('latents', [1, channels, size / 8, size / 8]))]).total;
}

/** An AutoencoderKL folder's decoder on one size² picture. */
function vaeDecodeFlops(dir: string, size: number): number {
  const vae = loadVae(dir);
  return decoderFlops((latents) => vae.decode(latents), vae.config.latent_channels, size);
}

/** The two decoders bench/taesd.bench.ts times, TAESD's and SD-1.5's, on one size² picture. */
export function taesdComparisonFlops(size: number): { taesd: number; vae: number } {
  const taesd = new AutoencoderTiny(parseAutoencoderTinyConfig(TAESD_CONFIG));
  const vae = new AutoencoderKL(parseVaeConfig(SD15_VAE_CONFIG));
  return {
    taesd: decoderFlops((latents) => taesd.decode(latents), TAESD_CONFIG.latent_channels, size),
    vae: decoderFlops((latents) => vae.decode(latents), SD15_VAE_CONFIG.latent_channels, size),
  };
}

/** FLOPs of each stage of a guided txt2img run at size² for a diffusers folder (weights stay in their files). */
export function stageFlops(model: string, size: number, prompts = 2): StageFlops {
  const text = loadClipTextModel(join(model, 'text_encoder'));
  const length = text.config.max_position_embeddings;
  const ids = T.input('input_ids', [prompts, length], 'int64');
  const textEncoder = countFlops([text.forward(ids).lastHiddenState]).total;
  const unetStep = unetStepFlops(loadUNet(join(model, 'unet')), size, [length, text.config.hidden_size]);
  return { textEncoder, unetStep, vaeDecode: vaeDecodeFlops(join(model, 'vae'), size) };
}
