// diffusers' `unet/config.json` for UNet2DConditionModel: field names as diffusers writes them,
// diffusers' defaults for absent fields, per-block fields widened to one entry per block, and a
// clear error for features this UNet does not implement (class labels, image embeddings, …).
// Every size is bounded (bounds.ts) before anything is built from it.

import { CONFIG_BOUNDS as B } from './bounds.ts';
import type { ConfigJson } from './config-file.ts';
import { ConfigReader } from './config-reader.ts';

export type DownBlockType = 'CrossAttnDownBlock2D' | 'DownBlock2D';
export type UpBlockType = 'CrossAttnUpBlock2D' | 'UpBlock2D';

export interface UNetConfig {
  in_channels: number;
  out_channels: number;
  sample_size: number;
  block_out_channels: number[];
  down_block_types: DownBlockType[];
  up_block_types: UpBlockType[];
  mid_block_type: 'UNetMidBlock2DCrossAttn';
  /** Per down level (up blocks have one more). */
  layers_per_block: number[];
  /** Per level. */
  cross_attention_dim: number[];
  /**
   * Heads per level. diffusers' quirk: configs name the head count `attention_head_dim`
   * (SD 1: 8 everywhere; SD 2: [5, 10, 20, 20]) unless `num_attention_heads` is given.
   */
  num_attention_heads: number[];
  /** Transformer blocks in each Transformer2DModel, per level. */
  transformer_layers_per_block: number[];
  use_linear_projection: boolean;
  norm_num_groups: number;
  norm_eps: number;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  downsample_padding: number;
  mid_block_scale_factor: number;
  /** Width of the time embedding; 4·block_out_channels[0] when absent. */
  time_embedding_dim: number | undefined;
  conv_in_kernel: number;
  conv_out_kernel: number;
  /**
   * SDXL's added conditions (`text_time`): a pooled text embedding and six size/crop numbers, each
   * number embedded sinusoidally at `addition_time_embed_dim`; null when the UNet has none.
   */
  addition_embed_type: 'text_time' | 'text' | null;
  addition_time_embed_dim: number | undefined;
  /**
   * `text`: the caption's states pooled by attention into one vector added to the time embedding
   * (src/models/text-pool-embedding.ts), with this many heads (diffusers' default 64).
   */
  addition_embed_type_num_heads: number | undefined;
  /** Width of the added embedding's input: pooled text width + 6 · addition_time_embed_dim. */
  projection_class_embeddings_input_dim: number | undefined;
  /**
   * An LCM-distilled UNet's guidance-scale embedding width (LCM-Dreamshaper-v7, LCM-SDXL: 256): it
   * takes w = guidance − 1 as `timestep_cond` and samples without an unconditional pass; null otherwise.
   */
  time_cond_proj_dim: number | null;
}

const DOWN_TYPES: readonly DownBlockType[] = ['CrossAttnDownBlock2D', 'DownBlock2D'];
const UP_TYPES: readonly UpBlockType[] = ['CrossAttnUpBlock2D', 'UpBlock2D'];

/** Fields that select features we do not implement, with the value that means "off". */
const UNSUPPORTED: Record<string, unknown> = {
  act_fn: 'silu',
  attention_type: 'default',
  center_input_sample: false,
  class_embed_type: null,
  class_embeddings_concat: false,
  cross_attention_norm: null,
  dual_cross_attention: false,
  encoder_hid_dim: null,
  encoder_hid_dim_type: null,
  mid_block_only_cross_attention: null,
  num_class_embeds: null,
  only_cross_attention: false,
  resnet_out_scale_factor: 1,
  resnet_skip_time_act: false,
  resnet_time_scale_shift: 'default',
  reverse_transformer_layers_per_block: null,
  time_embedding_act_fn: null,
  time_embedding_type: 'positional',
  timestep_post_act: null,
};

/** Reads a diffusers UNet2DConditionModel config object. */
export function parseUNetConfig(json: ConfigJson): UNetConfig {
  const r = new ConfigReader(json);
  for (const [field, off] of Object.entries(UNSUPPORTED)) r.only(field, off);
  const block_out_channels = r.ints('block_out_channels', [320, 640, 1280, 1280], { max: B.channels, maxLength: B.levels });
  const n = block_out_channels.length;
  const down_block_types = r.types('down_block_types', ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'], DOWN_TYPES);
  const up_block_types = r.types('up_block_types', ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'], UP_TYPES);
  if (down_block_types.length !== n || up_block_types.length !== n) {
    throw new Error(`${n} "block_out_channels" need ${n} down and up block types, got ${down_block_types.length} and ${up_block_types.length}`);
  }
  // null here is no mid block at all, not "unset".
  if (json.mid_block_type === null) throw new Error('"mid_block_type" null (no mid block) is not supported (only "UNetMidBlock2DCrossAttn")');
  r.only('mid_block_type', 'UNetMidBlock2DCrossAttn');
  // diffusers' quirk: the head count is in attention_head_dim unless num_attention_heads is given.
  const headsField = r.has('num_attention_heads') ? 'num_attention_heads' : 'attention_head_dim';
  const c: UNetConfig = {
    in_channels: r.int('in_channels', 4, B.channels),
    out_channels: r.int('out_channels', 4, B.channels),
    sample_size: r.int('sample_size', 64, B.sampleSize),
    block_out_channels,
    down_block_types,
    up_block_types,
    mid_block_type: 'UNetMidBlock2DCrossAttn',
    layers_per_block: r.perBlock('layers_per_block', 2, n, B.layers),
    cross_attention_dim: r.perBlock('cross_attention_dim', 1280, n, B.channels),
    num_attention_heads: r.perBlock(headsField, 8, n, B.heads),
    transformer_layers_per_block: r.perBlock('transformer_layers_per_block', 1, n, B.layers),
    use_linear_projection: r.bool('use_linear_projection', false),
    norm_num_groups: r.int('norm_num_groups', 32, B.channels),
    // ε and scale factors: 0, negatives and huge values give NaN or overflow in the first step.
    norm_eps: r.number('norm_eps', 1e-5, 0, 1),
    flip_sin_to_cos: r.bool('flip_sin_to_cos', true),
    freq_shift: r.finite('freq_shift', 0),
    downsample_padding: r.int('downsample_padding', 1, B.kernel, 0),
    mid_block_scale_factor: r.number('mid_block_scale_factor', 1, 0, 1e3),
    time_embedding_dim: r.optionalInt('time_embedding_dim', B.channels),
    conv_in_kernel: r.int('conv_in_kernel', 3, B.kernel),
    conv_out_kernel: r.int('conv_out_kernel', 3, B.kernel),
    ...additionEmbedding(r),
    // The embedding's frequencies divide by half its width − 1: 2 or 3 would divide by zero.
    time_cond_proj_dim: r.raw('time_cond_proj_dim') === null ? null : r.optionalInt('time_cond_proj_dim', B.channels, 4) ?? null,
  };
  if (c.addition_embed_type === 'text_time') {
    const timeDim = c.addition_time_embed_dim!;
    if (timeDim % 2) r.fail('addition_time_embed_dim', 'even');
    if (c.projection_class_embeddings_input_dim! <= 6 * timeDim) {
      throw new Error(`"projection_class_embeddings_input_dim" ${c.projection_class_embeddings_input_dim} leaves no room for the pooled text embedding beside 6 × "addition_time_embed_dim" ${timeDim}`);
    }
  }
  if (c.addition_embed_type === 'text') {
    const width = c.cross_attention_dim[0];
    if (c.cross_attention_dim.some((d) => d !== width)) throw new Error('"addition_embed_type" "text" pools the text states: "cross_attention_dim" must be the same for every block');
    if (width % c.addition_embed_type_num_heads!) r.fail('addition_embed_type_num_heads', `a divisor of "cross_attention_dim" ${width}`);
  }
  for (const field of ['conv_in_kernel', 'conv_out_kernel'] as const) if (c[field] % 2 !== 1) r.fail(field, 'odd');
  const ungrouped = block_out_channels.find((ch) => ch % c.norm_num_groups);
  if (ungrouped !== undefined) throw new Error(`${ungrouped} channels do not split into "norm_num_groups" ${c.norm_num_groups}`);
  if (Math.abs(c.freq_shift) >= block_out_channels[0] / 2) r.fail('freq_shift', `smaller than half the time embedding's ${block_out_channels[0] / 2} frequencies`);
  return c;
}

type AdditionFields = 'addition_embed_type' | 'addition_time_embed_dim' | 'projection_class_embeddings_input_dim' | 'addition_embed_type_num_heads';

/**
 * addition_embed_type and its sizes: null; SDXL's `text_time` (both sizes required); or `text`, the
 * pooled caption (its head count defaults to diffusers' 64).
 */
function additionEmbedding(r: ConfigReader): Pick<UNetConfig, AdditionFields> {
  const none = { addition_embed_type: null, addition_time_embed_dim: undefined, projection_class_embeddings_input_dim: undefined, addition_embed_type_num_heads: undefined };
  if (!r.has('addition_embed_type')) return none;
  const type = r.raw('addition_embed_type');
  if (type === 'text') return { ...none, addition_embed_type: 'text', addition_embed_type_num_heads: r.int('addition_embed_type_num_heads', 64, B.heads) };
  if (type !== 'text_time') throw new Error(`"addition_embed_type" ${JSON.stringify(type)} is not supported (only null, "text_time" or "text")`);
  for (const field of ['addition_time_embed_dim', 'projection_class_embeddings_input_dim']) {
    if (!r.has(field)) throw new Error(`"addition_embed_type" "text_time" needs "${field}"`);
  }
  return {
    ...none,
    addition_embed_type: 'text_time',
    addition_time_embed_dim: r.int('addition_time_embed_dim', 0, B.channels),
    projection_class_embeddings_input_dim: r.int('projection_class_embeddings_input_dim', 0, B.channels),
  };
}
