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

import { join } from 'node:path';
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
import { CONFIG_BOUNDS as B, boundedNumber } from './checkpoint/bounds.ts';
import { inFile, parseConfigFile } from './checkpoint/config-file.ts';
import { bindWeights } from './checkpoint/bind.ts';
import { checkLayerCounts } from './checkpoint/layer-counts.ts';
import { type Weights, openWeights } from './checkpoint/weights.ts';

/** The VAE's GroupNorm ε, in every norm of encoder and decoder. */
const VAE_EPS = 1e-6;

export interface VaeConfig {
  inChannels: number;
  outChannels: number;
  /** One entry per resolution level, the widest last; the encoder halves the size between levels. */
  blockOutChannels: number[];
  layersPerBlock: number;
  latentChannels: number;
  normNumGroups: number;
  /** Image size the model was trained at (pixels). */
  sampleSize: number;
  /** Pipelines multiply encoder latents by this and divide by it before decoding. */
  scalingFactor: number;
  /** SD3-style latent shift, absent for SD 1.x/2.x: latents = (z − shift) · scaling. */
  shiftFactor?: number;
  /** Per-channel latent statistics some checkpoints carry (SDXL-style pipelines use them). */
  latentsMean?: number[];
  latentsStd?: number[];
  useQuantConv: boolean;
  usePostQuantConv: boolean;
  midBlockAddAttention: boolean;
}

type Json = Readonly<Record<string, unknown>>;

/** Reads a diffusers `vae/config.json` (AutoencoderKL), applying diffusers' defaults to absent fields. */
export function parseVaeConfig(json: unknown): VaeConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('VAE config must be a JSON object');
  const c = json as Json;
  const fail = (field: string, want: string): never => {
    throw new Error(`VAE config: "${field}" must be ${want}, got ${JSON.stringify(c[field])}`);
  };
  const int = (field: string, fallback: number, max: number = B.channels): number => {
    const v = c[field] ?? fallback;
    return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= max ? v : fail(field, `an integer from 1 to ${max}`);
  };
  /** Finite, > low, ≤ high: a scaling factor of 1e-300 divides latents into Inf. */
  const bounded = (field: string, value: unknown, low: number, high: number): number => {
    try {
      return boundedNumber(value, field, low, high, true);
    } catch (e) {
      throw new Error(`VAE config: ${(e as Error).message}`);
    }
  };
  const bool = (field: string, fallback: boolean): boolean => {
    const v = c[field] ?? fallback;
    return typeof v === 'boolean' ? v : fail(field, 'true or false');
  };
  const numbers = (field: string): number[] | undefined => {
    const v = c[field];
    if (v === undefined || v === null) return undefined;
    return Array.isArray(v) && v.length <= B.channels && v.every((x) => typeof x === 'number' && Number.isFinite(x)) ? (v as number[]) : fail(field, 'a list of finite numbers or null');
  };
  const blockTypes = (field: string, want: string): number => {
    const v = c[field] ?? [want];
    if (!Array.isArray(v) || !v.length) return fail(field, 'a non-empty list');
    const other = v.find((t) => t !== want);
    if (other !== undefined) throw new Error(`VAE config: ${field} has ${JSON.stringify(other)}; only ${want} is supported`);
    return v.length;
  };

  const blockOutChannels = numbers('block_out_channels') ?? [64];
  if (!blockOutChannels.length || blockOutChannels.length > B.levels || blockOutChannels.some((n) => !Number.isInteger(n) || n < 1 || n > B.channels)) {
    fail('block_out_channels', `a list of 1 to ${B.levels} integers from 1 to ${B.channels}`);
  }
  const levels = blockOutChannels.length;
  if (blockTypes('down_block_types', 'DownEncoderBlock2D') !== levels || blockTypes('up_block_types', 'UpDecoderBlock2D') !== levels) {
    throw new Error(`VAE config: down_block_types and up_block_types need one entry per block_out_channels (${levels})`);
  }
  const act = c.act_fn ?? 'silu';
  if (act !== 'silu') throw new Error(`VAE config: act_fn ${JSON.stringify(act)} is not supported (only "silu")`);
  const normNumGroups = int('norm_num_groups', 32);
  const odd = blockOutChannels.find((n) => n % normNumGroups);
  if (odd !== undefined) throw new Error(`VAE config: ${odd} channels do not split into norm_num_groups=${normNumGroups}`);
  // Released VAEs use 0.13 to 1.53; outside [1e-3, 1e3] latents over- or underflow float32.
  const scalingFactor = bounded('scaling_factor', c.scaling_factor ?? 0.18215, 1e-3, 1e3);
  const shiftFactor = c.shift_factor;
  if (shiftFactor !== undefined && shiftFactor !== null && (typeof shiftFactor !== 'number' || !(Math.abs(shiftFactor) <= 1e3))) fail('shift_factor', 'a number from -1000 to 1000, or null');

  const latentChannels = int('latent_channels', 4);
  const latentsMean = numbers('latents_mean');
  const latentsStd = numbers('latents_std');
  for (const [field, v] of [['latents_mean', latentsMean], ['latents_std', latentsStd]] as const) {
    if (v && v.length !== latentChannels) fail(field, `a list of ${latentChannels} numbers (latent_channels)`);
  }
  if (!latentsMean !== !latentsStd) throw new Error('VAE config: latents_mean and latents_std come together');
  if (latentsStd?.some((x) => !(x >= 1e-6))) fail('latents_std', 'a list of numbers ≥ 1e-6');

  return {
    inChannels: int('in_channels', 3),
    outChannels: int('out_channels', 3),
    blockOutChannels,
    layersPerBlock: int('layers_per_block', 1, B.layers),
    latentChannels,
    normNumGroups,
    sampleSize: int('sample_size', 32, B.sampleSize),
    scalingFactor,
    ...(typeof shiftFactor === 'number' ? { shiftFactor } : {}),
    ...(latentsMean && latentsStd ? { latentsMean, latentsStd } : {}),
    useQuantConv: bool('use_quant_conv', true),
    usePostQuantConv: bool('use_post_quant_conv', true),
    midBlockAddAttention: bool('mid_block_add_attention', true),
  };
}

/** How much the encoder shrinks each side: 2 per level after the first (8 for SD). */
export function vaeDownscale(config: VaeConfig): number {
  return 2 ** (config.blockOutChannels.length - 1);
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
    const ch = cfg.blockOutChannels;
    const groups = cfg.normNumGroups;
    this.conv_in = new Conv2d(joinName(name, 'conv_in'), cfg.inChannels, ch[0], 3, { padding: 1 });
    this.down_blocks = ch.map((out, i) =>
      new VaeLevel(joinName(name, `down_blocks.${i}`), { inChannels: ch[Math.max(0, i - 1)], outChannels: out, layers: cfg.layersPerBlock, groups, resample: i < ch.length - 1 ? 'down' : 'none' }),
    );
    const top = ch[ch.length - 1];
    this.mid_block = new VaeMidBlock(joinName(name, 'mid_block'), top, groups, cfg.midBlockAddAttention);
    this.conv_norm_out = new GroupNorm(joinName(name, 'conv_norm_out'), groups, top, VAE_EPS);
    this.conv_out = new Conv2d(joinName(name, 'conv_out'), top, 2 * cfg.latentChannels, 3, { padding: 1 });
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
    const ch = [...cfg.blockOutChannels].reverse(); // widest first
    const groups = cfg.normNumGroups;
    this.conv_in = new Conv2d(joinName(name, 'conv_in'), cfg.latentChannels, ch[0], 3, { padding: 1 });
    this.mid_block = new VaeMidBlock(joinName(name, 'mid_block'), ch[0], groups, cfg.midBlockAddAttention);
    this.up_blocks = ch.map((out, i) =>
      new VaeLevel(joinName(name, `up_blocks.${i}`), { inChannels: ch[Math.max(0, i - 1)], outChannels: out, layers: cfg.layersPerBlock + 1, groups, resample: i < ch.length - 1 ? 'up' : 'none' }),
    );
    this.conv_norm_out = new GroupNorm(joinName(name, 'conv_norm_out'), groups, ch[ch.length - 1], VAE_EPS);
    this.conv_out = new Conv2d(joinName(name, 'conv_out'), ch[ch.length - 1], cfg.outChannels, 3, { padding: 1 });
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
    const z = config.latentChannels;
    this.encoder = new VaeEncoder(joinName(name, 'encoder'), config);
    this.decoder = new VaeDecoder(joinName(name, 'decoder'), config);
    this.quant_conv = config.useQuantConv ? new Conv2d(joinName(name, 'quant_conv'), 2 * z, 2 * z, 1) : undefined;
    this.post_quant_conv = config.usePostQuantConv ? new Conv2d(joinName(name, 'post_quant_conv'), z, z, 1) : undefined;
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

// Checkpoints saved before diffusers' Attention refactor name the mid-block projections differently.
const LEGACY_ATTENTION_NAMES: [RegExp, string][] = [
  [/\.attentions\.0\.to_q\./, '.attentions.0.query.'],
  [/\.attentions\.0\.to_k\./, '.attentions.0.key.'],
  [/\.attentions\.0\.to_v\./, '.attentions.0.value.'],
  [/\.attentions\.0\.to_out\.0\./, '.attentions.0.proj_attn.'],
];

/** Binds the model's parameters to a diffusers-layout VAE checkpoint (either attention naming; 1×1 conv-shaped projections accepted). */
function bindVaeWeights(vae: AutoencoderKL, weights: Weights): void {
  bindWeights(vae.parameters(), weights, {
    what: 'VAE',
    aliases: (name) => LEGACY_ATTENTION_NAMES.filter(([re]) => re.test(name)).map(([re, legacy]) => name.replace(re, legacy)),
    sameBytes: (p) => /\.attentions\.\d+\./.test(p.name) && p.shape.length === 2,
  });
}

export interface LoadVaeOptions {
  /** 'fp16' prefers diffusion_pytorch_model.fp16.safetensors; by default the plain file is preferred. */
  variant?: 'fp16';
}

/** Loads a diffusers `vae/` folder: config.json and its weights (checkpoint/weights.ts: variants, shards). */
export function loadVae(dir: string, options: LoadVaeOptions = {}): AutoencoderKL {
  const configPath = join(dir, 'config.json');
  const config = parseConfigFile(configPath, 'VAE config', parseVaeConfig);
  const file = openWeights(dir, 'diffusion_pytorch_model', options.variant);
  const levels = config.blockOutChannels.length;
  checkLayerCounts(file, configPath, [
    { field: 'block_out_channels', prefix: 'encoder.down_blocks', expected: levels },
    { field: 'block_out_channels', prefix: 'decoder.up_blocks', expected: levels },
    { field: 'layers_per_block', prefix: 'encoder.down_blocks.0.resnets', expected: config.layersPerBlock },
    { field: 'layers_per_block + 1', prefix: 'decoder.up_blocks.0.resnets', expected: config.layersPerBlock + 1 },
  ]);
  const vae = inFile(configPath, () => new AutoencoderKL(config));
  bindVaeWeights(vae, file);
  return vae;
}
