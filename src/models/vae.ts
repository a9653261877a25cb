// AutoencoderKL, the Stable Diffusion VAE, with diffusers' config fields and parameter names.
//
//   encode: image [B,3,H,W] in [-1,1] → conv_in → down blocks (resnets, stride-2 conv) → mid block
//           (resnet, single-head self-attention, resnet) → GroupNorm–SiLU–conv_out → quant_conv
//           → mean, logvar [B,latent,H/f,W/f] (f = 2^(levels−1), 8 for SD)
//   decode: latents → post_quant_conv → conv_in → mid block → up blocks (resnets, nearest 2× + conv)
//           → GroupNorm–SiLU–conv_out → image [B,3,H,W], roughly in [-1,1], not clamped
//
// Both are traced functions over symbolic tensors; `VaeRunner` (vae-runner.ts) compiles them once
// with symbolic batch and size and adds the pipeline's scaling and [0,1] mapping.

import {
  Conv2d,
  GroupNorm,
  Linear,
  Module,
  add,
  attention,
  chunk,
  exp,
  greater,
  joinName,
  maximum,
  mul,
  reshape,
  silu,
  type Tensor,
  transpose,
  where,
} from '../engine/index.ts';
import { Downsample2D, ResnetBlock2D, Upsample2D } from './blocks.ts';
import type { VaeConfig } from './checkpoint/vae-config.ts';

export type { VaeConfig } from './checkpoint/vae-config.ts';

/** The VAE's GroupNorm ε, in every norm of encoder and decoder. */
const VAE_EPS = 1e-6;

/** How much the encoder shrinks each side: 2 per level after the first (8 for SD). */
export function vaeDownscale(config: VaeConfig): number {
  return 2 ** (config.block_out_channels.length - 1);
}

/**
 * The mid block's self-attention over all H·W positions: one head of width C, so the scale is
 * 1/√C; GroupNorm first, residual added after `to_out.0`.
 */
export class VaeAttention extends Module {
  readonly group_norm: GroupNorm;
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: Linear[];

  constructor(name: string, readonly channels: number, groups: number) {
    super(name);
    this.group_norm = new GroupNorm(joinName(name, 'group_norm'), groups, channels, VAE_EPS);
    this.to_q = new Linear(joinName(name, 'to_q'), channels, channels);
    this.to_k = new Linear(joinName(name, 'to_k'), channels, channels);
    this.to_v = new Linear(joinName(name, 'to_v'), channels, channels);
    this.to_out = [new Linear(joinName(name, 'to_out.0'), channels, channels)];
  }

  /** x [B, C, H, W] → [B, C, H, W] */
  forward(x: Tensor): Tensor {
    const [b, c] = x.shape;
    const tokens = transpose(reshape(this.group_norm.forward(x), [b, c, -1]), [0, 2, 1]); // [B, H·W, C]
    const attended = attention(this.to_q.forward(tokens), this.to_k.forward(tokens), this.to_v.forward(tokens), 1, 1 / Math.sqrt(this.channels));
    const out = this.to_out[0].forward(attended);
    return add(x, reshape(transpose(out, [0, 2, 1]), x.shape));
  }
}

/** UNetMidBlock2D without a time embedding: resnet, attention, resnet at the lowest resolution. */
export class VaeMidBlock extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: VaeAttention[];

  constructor(name: string, channels: number, groups: number, withAttention: boolean) {
    super(name);
    const resnet = (i: number) => new ResnetBlock2D(joinName(name, `resnets.${i}`), { inChannels: channels, outChannels: channels, groups, eps: VAE_EPS });
    this.resnets = [resnet(0), resnet(1)];
    this.attentions = withAttention ? [new VaeAttention(joinName(name, 'attentions.0'), channels, groups)] : [];
  }

  forward(x: Tensor): Tensor {
    let h = this.resnets[0].forward(x);
    if (this.attentions.length) h = this.attentions[0].forward(h);
    return this.resnets[1].forward(h);
  }
}

/** Resnets at one resolution, then (except at the last level) a 2× resampler. */
class VaeLevel extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly downsamplers: Downsample2D[] = [];
  readonly upsamplers: Upsample2D[] = [];

  constructor(name: string, o: { inChannels: number; outChannels: number; layers: number; groups: number; resample: 'down' | 'up' | 'none' }) {
    super(name);
    this.resnets = Array.from({ length: o.layers }, (_, i) =>
      new ResnetBlock2D(joinName(name, `resnets.${i}`), { inChannels: i === 0 ? o.inChannels : o.outChannels, outChannels: o.outChannels, groups: o.groups, eps: VAE_EPS }),
    );
    // The encoder pads one zero row and column after (padding 0), not one on each side.
    if (o.resample === 'down') this.downsamplers.push(new Downsample2D(joinName(name, 'downsamplers.0'), o.outChannels, { padding: 0 }));
    if (o.resample === 'up') this.upsamplers.push(new Upsample2D(joinName(name, 'upsamplers.0'), o.outChannels));
  }

  forward(x: Tensor): Tensor {
    let h = x;
    for (const r of this.resnets) h = r.forward(h);
    for (const d of this.downsamplers) h = d.forward(h);
    for (const u of this.upsamplers) h = u.forward(h);
    return h;
  }
}

export class VaeEncoder extends Module {
  readonly conv_in: Conv2d;
  readonly down_blocks: VaeLevel[];
  readonly mid_block: VaeMidBlock;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(name: string, cfg: VaeConfig) {
    super(name);
    const ch = cfg.block_out_channels;
    const groups = cfg.norm_num_groups;
    this.conv_in = new Conv2d(joinName(name, 'conv_in'), cfg.in_channels, ch[0], 3, { padding: 1 });
    this.down_blocks = ch.map((out, i) =>
      new VaeLevel(joinName(name, `down_blocks.${i}`), { inChannels: ch[Math.max(0, i - 1)], outChannels: out, layers: cfg.layers_per_block, groups, resample: i < ch.length - 1 ? 'down' : 'none' }),
    );
    const top = ch[ch.length - 1];
    this.mid_block = new VaeMidBlock(joinName(name, 'mid_block'), top, groups, cfg.mid_block_add_attention);
    this.conv_norm_out = new GroupNorm(joinName(name, 'conv_norm_out'), groups, top, VAE_EPS);
    this.conv_out = new Conv2d(joinName(name, 'conv_out'), top, 2 * cfg.latent_channels, 3, { padding: 1 });
  }

  /** image [B, Cin, H, W] → moments [B, 2·latent, H/f, W/f] (mean and logvar stacked on channels) */
  forward(x: Tensor): Tensor {
    let h = this.conv_in.forward(x);
    for (const block of this.down_blocks) h = block.forward(h);
    h = this.mid_block.forward(h);
    return this.conv_out.forward(silu(this.conv_norm_out.forward(h)));
  }
}

export class VaeDecoder extends Module {
  readonly conv_in: Conv2d;
  readonly mid_block: VaeMidBlock;
  readonly up_blocks: VaeLevel[];
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(name: string, cfg: VaeConfig) {
    super(name);
    const ch = [...cfg.block_out_channels].reverse(); // widest first
    const groups = cfg.norm_num_groups;
    this.conv_in = new Conv2d(joinName(name, 'conv_in'), cfg.latent_channels, ch[0], 3, { padding: 1 });
    this.mid_block = new VaeMidBlock(joinName(name, 'mid_block'), ch[0], groups, cfg.mid_block_add_attention);
    this.up_blocks = ch.map((out, i) =>
      new VaeLevel(joinName(name, `up_blocks.${i}`), { inChannels: ch[Math.max(0, i - 1)], outChannels: out, layers: cfg.layers_per_block + 1, groups, resample: i < ch.length - 1 ? 'up' : 'none' }),
    );
    this.conv_norm_out = new GroupNorm(joinName(name, 'conv_norm_out'), groups, ch[ch.length - 1], VAE_EPS);
    this.conv_out = new Conv2d(joinName(name, 'conv_out'), ch[ch.length - 1], cfg.out_channels, 3, { padding: 1 });
  }

  /** latents [B, latent, h, w] → image [B, Cout, h·f, w·f] */
  forward(z: Tensor): Tensor {
    let h = this.mid_block.forward(this.conv_in.forward(z));
    for (const block of this.up_blocks) h = block.forward(h);
    return this.conv_out.forward(silu(this.conv_norm_out.forward(h)));
  }
}

/** The encoder's diagonal Gaussian over latents, all [B, latent, h, w]; std = exp(logvar / 2). */
export interface LatentDistribution {
  mean: Tensor;
  logvar: Tensor;
  std: Tensor;
}

export class AutoencoderKL extends Module {
  readonly encoder: VaeEncoder;
  readonly decoder: VaeDecoder;
  readonly quant_conv: Conv2d | undefined;
  readonly post_quant_conv: Conv2d | undefined;

  constructor(readonly config: VaeConfig, name = '') {
    super(name);
    const z = config.latent_channels;
    this.encoder = new VaeEncoder(joinName(name, 'encoder'), config);
    this.decoder = new VaeDecoder(joinName(name, 'decoder'), config);
    this.quant_conv = config.use_quant_conv ? new Conv2d(joinName(name, 'quant_conv'), 2 * z, 2 * z, 1) : undefined;
    this.post_quant_conv = config.use_post_quant_conv ? new Conv2d(joinName(name, 'post_quant_conv'), z, z, 1) : undefined;
  }

  /** image [B, 3, H, W] in [-1, 1] → the latent distribution (unscaled: no scaling_factor here). */
  encode(image: Tensor): LatentDistribution {
    let moments = this.encoder.forward(image);
    if (this.quant_conv) moments = this.quant_conv.forward(moments);
    const [mean, raw] = chunk(moments, 2, 1);
    const logvar = where(greater(raw, 20), 20, maximum(raw, -30)); // clamp to [−30, 20]
    return { mean, logvar, std: exp(mul(logvar, 0.5)) };
  }

  /** latents [B, 4, h, w] (unscaled) → raw decoder output [B, 3, H, W], not clamped. */
  decode(latents: Tensor): Tensor {
    const z = this.post_quant_conv ? this.post_quant_conv.forward(latents) : latents;
    return this.decoder.forward(z);
  }
}
