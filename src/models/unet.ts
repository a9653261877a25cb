// The conditional UNet of Stable Diffusion (diffusers' UNet2DConditionModel), built from its
// `unet/config.json` with diffusers' parameter names, so a diffusers folder loads by name.
//
//   sample [B, 4, H, W] ─ conv_in ─ down blocks ─ mid block ─ up blocks ─ norm · SiLU · conv_out ─► ε (or v)
//                                   │ (skips) ─────────────────► │ (concatenated on channels)
//   timestep [B] ─ sinusoids ─ time_embedding ─► every resnet;   text states [B, 77, C] ─► every cross-attention
//   (SDXL, addition_embed_type "text_time": + add_embedding(pooled text, sinusoids of the 6 size/crop numbers))
//   (addition_embed_type "text": + add_embedding(the text states pooled by attention))
//   (LCM-distilled, time_cond_proj_dim: the guidance-scale embedding joins the sinusoids through cond_proj)
//
// Any H and W: stride-2 convs round odd sizes up (9 → 5 → 3) and each upsampler resizes to the
// skip it meets next (3 → 5 → 9), as diffusers' `forward_upsample_size` does.

import {
  Conv2d,
  GroupNorm,
  Linear,
  Module,
  Tensor,
  add,
  concat,
  cos,
  exp,
  joinName,
  mul,
  reshape,
  silu,
  sin,
  unsqueeze,
} from '../engine/index.ts';
import { type AttentionHook, type AttentionPlace, type HookSite, Transformer2DModel } from './attention.ts';
import { Downsample2D, ResnetBlock2D, Upsample2D } from './blocks.ts';
import type { UNetConfig } from './checkpoint/unet-config.ts';
import { TextPoolEmbedding } from './text-pool-embedding.ts';

export type { UNetConfig } from './checkpoint/unet-config.ts';
export type { AttentionCall, AttentionHook, AttentionLayer, AttentionPlace } from './attention.ts';

export interface UNetForwardOptions {
  /** Called for every attention layer; see AttentionHook. Without one the fused attention op is used. */
  attentionHook?: AttentionHook;
  /** SDXL's added conditions; required exactly when the config's addition_embed_type is "text_time". */
  added?: AddedConditions;
  /**
   * [B, time_cond_proj_dim]: an LCM-distilled UNet's guidance-scale embedding (diffusers'
   * timestep_cond, see guidance-embedding.ts), projected by time_embedding.cond_proj and added to
   * the timestep's sinusoids. Without it the projection is skipped, as in diffusers.
   */
  timestepCond?: Tensor;
  /**
   * ControlNet residuals (diffusers' down_block_additional_residuals / mid_block_additional_residual):
   * called with each skip connection in order (index 0 = conv_in's; 12 for SD) and then with the
   * mid block's output ('mid'); the tensor it returns, of the same shape, is added to it.
   */
  controlResidual?: (feature: Tensor, index: number | 'mid') => Tensor;
}

/** SDXL's `added_cond_kwargs`. */
export interface AddedConditions {
  /** The pooled, projected text embedding [B, P] (the second text encoder's text_embeds). */
  textEmbeds: Tensor;
  /** [B, 6]: original height, width, crop top, left, target height, width. */
  timeIds: Tensor;
}

/** Shared by the blocks of one forward pass. */
interface ForwardContext {
  temb: Tensor;
  context: Tensor;
  site: (place: AttentionPlace) => HookSite | undefined;
}

interface BlockShape {
  config: UNetConfig;
  /** Depth in the UNet (0 = full resolution): selects per-level config entries. */
  level: number;
  layers: number;
  inChannels: number;
  outChannels: number;
  tembChannels: number;
  withAttention: boolean;
}

function resnet(name: string, s: BlockShape, inChannels: number, outputScaleFactor = 1): ResnetBlock2D {
  const { config: c } = s;
  return new ResnetBlock2D(name, { inChannels, outChannels: s.outChannels, tembChannels: s.tembChannels, groups: c.norm_num_groups, eps: c.norm_eps, outputScaleFactor });
}

function transformer(name: string, c: UNetConfig, channels: number, level: number): Transformer2DModel {
  const heads = c.num_attention_heads[level];
  if (channels % heads) throw new Error(`${channels} channels do not split into ${heads} attention heads ("num_attention_heads")`);
  return new Transformer2DModel(name, {
    heads,
    headDim: channels / heads,
    channels,
    crossDim: c.cross_attention_dim[level],
    layers: c.transformer_layers_per_block[level],
    groups: c.norm_num_groups,
    useLinearProjection: c.use_linear_projection,
  });
}

/** CrossAttnDownBlock2D or DownBlock2D: (resnet, transformer?) × layers, then a stride-2 conv. */
class DownBlock extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];
  readonly downsamplers: Downsample2D[];

  constructor(name: string, s: BlockShape, addDownsample: boolean) {
    super(name);
    this.resnets = Array.from({ length: s.layers }, (_, j) => resnet(joinName(name, `resnets.${j}`), s, j === 0 ? s.inChannels : s.outChannels));
    this.attentions = s.withAttention ? this.resnets.map((_, j) => transformer(joinName(name, `attentions.${j}`), s.config, s.outChannels, s.level)) : [];
    this.downsamplers = addDownsample ? [new Downsample2D(joinName(name, 'downsamplers.0'), s.outChannels, { padding: s.config.downsample_padding })] : [];
  }

  /** Returns the output and the skips it leaves for the up path (one per resnet, one after downsampling). */
  forward(x: Tensor, f: ForwardContext): { out: Tensor; skips: Tensor[] } {
    const skips: Tensor[] = [];
    this.resnets.forEach((r, j) => {
      x = r.forward(x, f.temb);
      if (this.attentions.length) x = this.attentions[j].forward(x, f.context, f.site('down'));
      skips.push(x);
    });
    for (const d of this.downsamplers) skips.push((x = d.forward(x)));
    return { out: x, skips };
  }
}

/** UNetMidBlock2DCrossAttn: resnet, then (transformer, resnet) × layers. */
class MidBlock extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];

  constructor(name: string, s: BlockShape) {
    super(name);
    const scale = s.config.mid_block_scale_factor;
    this.resnets = Array.from({ length: s.layers + 1 }, (_, j) => resnet(joinName(name, `resnets.${j}`), s, s.inChannels, scale));
    this.attentions = Array.from({ length: s.layers }, (_, j) => transformer(joinName(name, `attentions.${j}`), s.config, s.inChannels, s.level));
  }

  forward(x: Tensor, f: ForwardContext): Tensor {
    x = this.resnets[0].forward(x, f.temb);
    this.attentions.forEach((a, j) => {
      x = this.resnets[j + 1].forward(a.forward(x, f.context, f.site('mid')), f.temb);
    });
    return x;
  }
}

/** CrossAttnUpBlock2D or UpBlock2D: (concat skip, resnet, transformer?) × layers, then upsample. */
class UpBlock extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];
  readonly upsamplers: Upsample2D[];

  /** `prevChannels`: the incoming feature map's; `s.inChannels`: the channels of the deepest skip it takes. */
  constructor(name: string, s: BlockShape, prevChannels: number, addUpsample: boolean) {
    super(name);
    this.resnets = Array.from({ length: s.layers }, (_, j) => {
      const skipChannels = j === s.layers - 1 ? s.inChannels : s.outChannels;
      return resnet(joinName(name, `resnets.${j}`), s, (j === 0 ? prevChannels : s.outChannels) + skipChannels);
    });
    this.attentions = s.withAttention ? this.resnets.map((_, j) => transformer(joinName(name, `attentions.${j}`), s.config, s.outChannels, s.level)) : [];
    this.upsamplers = addUpsample ? [new Upsample2D(joinName(name, 'upsamplers.0'), s.outChannels)] : [];
  }

  /** Takes its skips from the end of `skips` (last pushed first); upsamples to the next one's size. */
  forward(x: Tensor, skips: Tensor[], f: ForwardContext): Tensor {
    this.resnets.forEach((r, j) => {
      x = r.forward(concat([x, skips.pop()!], 1), f.temb);
      if (this.attentions.length) x = this.attentions[j].forward(x, f.context, f.site('up'));
    });
    for (const u of this.upsamplers) x = u.forward(x, skips[skips.length - 1]);
    return x;
  }
}

/** linear_1 → SiLU → linear_2 on the sinusoidal embedding (plus cond_proj of a condition, when it has one). */
class TimestepEmbedding extends Module {
  readonly linear_1: Linear;
  readonly linear_2: Linear;
  /** condDim → inChannels, no bias (LCM's guidance-scale embedding). */
  readonly cond_proj: Linear | undefined;

  constructor(name: string, inChannels: number, dim: number, condDim?: number) {
    super(name);
    this.linear_1 = new Linear(joinName(name, 'linear_1'), inChannels, dim);
    this.linear_2 = new Linear(joinName(name, 'linear_2'), dim, dim);
    this.cond_proj = condDim ? new Linear(joinName(name, 'cond_proj'), condDim, inChannels, false) : undefined;
  }

  forward(x: Tensor, condition?: Tensor): Tensor {
    if (condition) {
      if (!this.cond_proj) throw new Error('unet: timestep_cond given to a UNet whose config has no time_cond_proj_dim');
      x = add(x, this.cond_proj.forward(condition));
    }
    return this.linear_2.forward(silu(this.linear_1.forward(x)));
  }
}

export class UNet2DConditionModel extends Module {
  readonly conv_in: Conv2d;
  readonly time_embedding: TimestepEmbedding;
  /** SDXL's added-condition embedding (addition_embed_type "text_time"), else undefined. */
  readonly add_embedding: TimestepEmbedding | undefined;
  /** The pooled caption (addition_embed_type "text"; its weights are named add_embedding.* too), else undefined. */
  readonly text_pool_embedding: TextPoolEmbedding | undefined;
  readonly down_blocks: DownBlock[];
  readonly mid_block: MidBlock;
  readonly up_blocks: UpBlock[];
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(readonly config: UNetConfig) {
    super('');
    const c = config;
    const channels = c.block_out_channels;
    const levels = channels.length;
    const tembChannels = c.time_embedding_dim ?? channels[0] * 4;
    this.conv_in = new Conv2d('conv_in', c.in_channels, channels[0], c.conv_in_kernel, { padding: (c.conv_in_kernel - 1) / 2 });
    this.time_embedding = new TimestepEmbedding('time_embedding', channels[0], tembChannels, c.time_cond_proj_dim ?? undefined);
    this.add_embedding = c.addition_embed_type === 'text_time' ? new TimestepEmbedding('add_embedding', c.projection_class_embeddings_input_dim!, tembChannels) : undefined;
    this.text_pool_embedding = c.addition_embed_type === 'text' ? new TextPoolEmbedding('add_embedding', c.cross_attention_dim[0], tembChannels, c.addition_embed_type_num_heads!) : undefined;

    const shape = (level: number, layers: number, inChannels: number, outChannels: number, type: string): BlockShape => ({
      config: c,
      level,
      layers,
      inChannels,
      outChannels,
      tembChannels,
      withAttention: type.startsWith('CrossAttn'),
    });
    this.down_blocks = c.down_block_types.map((type, i) => {
      const s = shape(i, c.layers_per_block[i], channels[Math.max(i - 1, 0)], channels[i], type);
      return new DownBlock(`down_blocks.${i}`, s, i < levels - 1);
    });
    this.mid_block = new MidBlock('mid_block', shape(levels - 1, 1, channels[levels - 1], channels[levels - 1], 'CrossAttn'));
    // Up block i mirrors down level `levels − 1 − i`; its last resnet takes that level's input skip.
    this.up_blocks = c.up_block_types.map((type, i) => {
      const level = levels - 1 - i;
      const s = shape(level, c.layers_per_block[level] + 1, channels[Math.max(level - 1, 0)], channels[level], type);
      const prevChannels = channels[Math.min(level + 1, levels - 1)];
      return new UpBlock(`up_blocks.${i}`, s, prevChannels, i < levels - 1);
    });
    this.conv_norm_out = new GroupNorm('conv_norm_out', c.norm_num_groups, channels[0], c.norm_eps);
    this.conv_out = new Conv2d('conv_out', channels[0], c.out_channels, c.conv_out_kernel, { padding: (c.conv_out_kernel - 1) / 2 });
  }

  /**
   * sample [B, in_channels, H, W], timestep [B] float32, encoderHiddenStates [B, tokens, cross_attention_dim]
   * → the model output [B, out_channels, H, W] (ε or v, per the scheduler's prediction_type).
   */
  forward(sample: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, options: UNetForwardOptions = {}): Tensor {
    const hook = options.attentionHook;
    let calls = 0;
    const site = (place: AttentionPlace): HookSite | undefined => hook && { hook, place, nextLayer: () => calls++ };
    let temb = this.time_embedding.forward(this.timeProjection(timestep), options.timestepCond);
    if (this.add_embedding) temb = add(temb, this.add_embedding.forward(this.addedEmbeddingInput(options.added)));
    else if (options.added) throw new Error('unet: added conditions (text_embeds, time_ids) given to a UNet whose config has no addition_embed_type "text_time"');
    if (this.text_pool_embedding) temb = add(temb, this.text_pool_embedding.forward(encoderHiddenStates));
    const f: ForwardContext = { temb, context: encoderHiddenStates, site };

    let x = this.conv_in.forward(sample);
    const skips = [x];
    for (const block of this.down_blocks) {
      const r = block.forward(x, f);
      x = r.out;
      skips.push(...r.skips);
    }
    const residual = options.controlResidual;
    if (residual) skips.forEach((skip, i) => (skips[i] = add(skip, residual(skip, i))));
    x = this.mid_block.forward(x, f);
    if (residual) x = add(x, residual(x, 'mid'));
    for (const block of this.up_blocks) x = block.forward(x, skips, f);
    return this.conv_out.forward(silu(this.conv_norm_out.forward(x)));
  }

  /** Sinusoidal embedding of the timestep, [B] → [B, block_out_channels[0]]. */
  timeProjection(timestep: Tensor): Tensor {
    return sinusoidalEmbedding(timestep, this.config.block_out_channels[0], this.config.flip_sin_to_cos, this.config.freq_shift);
  }

  /**
   * add_embedding's input [B, projection_class_embeddings_input_dim]: the pooled text embedding, then
   * each time id's sinusoidal embedding (diffusers' add_time_proj: always cos first, no shift).
   */
  addedEmbeddingInput(added: AddedConditions | undefined): Tensor {
    if (!added) throw new Error('unet: this UNet (addition_embed_type "text_time", SDXL) needs text_embeds and time_ids');
    const c = this.config;
    const timeDim = c.addition_time_embed_dim!;
    const [b] = added.timeIds.shape;
    const timeEmbeds = reshape(sinusoidalEmbedding(reshape(added.timeIds, [-1]), timeDim, true, 0), [b, 6 * timeDim]);
    return concat([added.textEmbeds, timeEmbeds], 1);
  }
}

/**
 * diffusers' `Timesteps`: [N] → [N, dim], frequencies exp(−ln(10000)·i / (half − shift)) with the
 * exponent rounded to float32 at each step as diffusers computes it; [cos, sin] when flipSinToCos,
 * else [sin, cos]. The arguments are float32 products, as in torch (SDXL's time ids reach 1024).
 */
function sinusoidalEmbedding(values: Tensor, dim: number, flipSinToCos: boolean, shift: number): Tensor {
  if (dim % 2) throw new Error(`unet: odd sinusoidal embedding width ${dim} is not supported`);
  const half = dim / 2;
  const exponent = new Float32Array(half);
  const lnPeriod = Math.fround(-Math.log(10000));
  for (let i = 0; i < half; i++) exponent[i] = Math.fround(Math.fround(lnPeriod * i) / Math.fround(half - shift));
  const freqs = exp(Tensor.constant(exponent, [1, half]));
  const args = mul(unsqueeze(values, 1), freqs); // [N, half]
  return concat(flipSinToCos ? [cos(args), sin(args)] : [sin(args), cos(args)], 1);
}
