// diffusers' `unet/config.json` for UNet2DConditionModel: field names as diffusers writes them,
// diffusers' defaults for absent fields, per-block fields widened to one entry per block, and a
// clear error for features this UNet does not implement (class labels, image embeddings, …).
// Every size is bounded (checkpoint/bounds.ts) before anything is built from it.

import { CONFIG_BOUNDS as B, boundedInt, boundedNumber } from './checkpoint/bounds.ts';

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
  addition_embed_type: 'text_time' | null;
  addition_time_embed_dim: number | undefined;
  /** Width of the added embedding's input: pooled text width + 6 · addition_time_embed_dim. */
  projection_class_embeddings_input_dim: number | undefined;
}

const DOWN_TYPES: readonly string[] = ['CrossAttnDownBlock2D', 'DownBlock2D'];
const UP_TYPES: readonly string[] = ['CrossAttnUpBlock2D', 'UpBlock2D'];

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
  time_cond_proj_dim: null,
  time_embedding_act_fn: null,
  time_embedding_type: 'positional',
  timestep_post_act: null,
};

type Json = Record<string, unknown>;

function fail(message: string): never {
  throw new Error(`unet config: ${message}`);
}

function number(json: Json, key: string, fallback: number): number {
  const v = json[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

/** ε, scale factors: 0, negatives and huge values give NaN or overflow in the first step. */
function positive(json: Json, key: string, fallback: number, max: number): number {
  try {
    return boundedNumber(json[key] ?? fallback, key, 0, max);
  } catch (e) {
    return fail((e as Error).message);
  }
}

function bool(json: Json, key: string, fallback: boolean): boolean {
  const v = json[key] ?? fallback;
  if (typeof v !== 'boolean') fail(`${key} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function int(json: Json, key: string, fallback: number, max: number, min = 1): number {
  try {
    return boundedInt(json[key] ?? fallback, key, max, min);
  } catch (e) {
    return fail((e as Error).message);
  }
}

/** An integer for every block, or a list with one per block, each from 1 to `max`. */
function perBlock(json: Json, key: string, fallback: number | number[], blocks: number, max: number): number[] {
  const v = json[key] ?? fallback;
  const list = typeof v === 'number' ? new Array<number>(blocks).fill(v) : v;
  if (!Array.isArray(list) || list.length !== blocks || list.some((x) => !Number.isInteger(x) || x < 1 || x > max)) {
    fail(`${key} must be an integer from 1 to ${max} or a list of ${blocks} such integers, got ${JSON.stringify(v)}`);
  }
  return list as number[];
}

function blockTypes<T extends string>(json: Json, key: string, fallback: T[], allowed: readonly string[]): T[] {
  const v = json[key] ?? fallback;
  if (!Array.isArray(v)) fail(`${key} must be a list, got ${JSON.stringify(v)}`);
  for (const t of v) {
    if (!allowed.includes(t as string)) fail(`${key} has unsupported block type ${JSON.stringify(t)} (supported: ${allowed.join(', ')})`);
  }
  return v as T[];
}

/** addition_embed_type and its sizes: null, or SDXL's `text_time` (both sizes required). */
function additionEmbedding(json: Json): Pick<UNetConfig, 'addition_embed_type' | 'addition_time_embed_dim' | 'projection_class_embeddings_input_dim'> {
  const type = json.addition_embed_type ?? null;
  if (type === null) return { addition_embed_type: null, addition_time_embed_dim: undefined, projection_class_embeddings_input_dim: undefined };
  if (type !== 'text_time') fail(`addition_embed_type=${JSON.stringify(type)} is not supported (only null or "text_time")`);
  for (const key of ['addition_time_embed_dim', 'projection_class_embeddings_input_dim']) {
    if (json[key] == null) fail(`addition_embed_type "text_time" needs ${key}`);
  }
  return {
    addition_embed_type: 'text_time',
    addition_time_embed_dim: int(json, 'addition_time_embed_dim', 0, B.channels),
    projection_class_embeddings_input_dim: int(json, 'projection_class_embeddings_input_dim', 0, B.channels),
  };
}

/** Reads a diffusers UNet2DConditionModel config.json object. */
export function parseUNetConfig(json: Json): UNetConfig {
  for (const [key, off] of Object.entries(UNSUPPORTED)) {
    const v = json[key];
    const offEverywhere = Array.isArray(v) && v.every((x) => x === off); // per-block lists, e.g. only_cross_attention
    if (v !== undefined && v !== off && !offEverywhere) fail(`${key}=${JSON.stringify(v)} is not supported (only ${JSON.stringify(off)})`);
  }
  const block_out_channels = json.block_out_channels === undefined ? [320, 640, 1280, 1280] : (json.block_out_channels as number[]);
  if (!Array.isArray(block_out_channels) || !block_out_channels.length || block_out_channels.length > B.levels || block_out_channels.some((c) => !Number.isInteger(c) || c <= 0 || c > B.channels)) {
    fail(`block_out_channels must be a list of 1 to ${B.levels} integers from 1 to ${B.channels}, got ${JSON.stringify(json.block_out_channels)}`);
  }
  const n = block_out_channels.length;
  const down_block_types = blockTypes<DownBlockType>(json, 'down_block_types', ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'], DOWN_TYPES);
  const up_block_types = blockTypes<UpBlockType>(json, 'up_block_types', ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'], UP_TYPES);
  if (down_block_types.length !== n || up_block_types.length !== n) {
    fail(`${n} block_out_channels need ${n} down and up block types, got ${down_block_types.length} and ${up_block_types.length}`);
  }
  const mid = json.mid_block_type === undefined ? 'UNetMidBlock2DCrossAttn' : json.mid_block_type;
  if (mid !== 'UNetMidBlock2DCrossAttn') fail(`mid_block_type ${JSON.stringify(mid)} is not supported (only UNetMidBlock2DCrossAttn)`);
  const headsKey = json.num_attention_heads != null ? 'num_attention_heads' : 'attention_head_dim';
  const c: UNetConfig = {
    in_channels: int(json, 'in_channels', 4, B.channels),
    out_channels: int(json, 'out_channels', 4, B.channels),
    sample_size: int(json, 'sample_size', 64, B.sampleSize),
    block_out_channels,
    down_block_types,
    up_block_types,
    mid_block_type: 'UNetMidBlock2DCrossAttn',
    layers_per_block: perBlock(json, 'layers_per_block', 2, n, B.layers),
    cross_attention_dim: perBlock(json, 'cross_attention_dim', 1280, n, B.channels),
    num_attention_heads: perBlock(json, headsKey, 8, n, B.heads),
    transformer_layers_per_block: perBlock(json, 'transformer_layers_per_block', 1, n, B.layers),
    use_linear_projection: bool(json, 'use_linear_projection', false),
    norm_num_groups: int(json, 'norm_num_groups', 32, B.channels),
    norm_eps: positive(json, 'norm_eps', 1e-5, 1),
    flip_sin_to_cos: bool(json, 'flip_sin_to_cos', true),
    freq_shift: number(json, 'freq_shift', 0),
    downsample_padding: int(json, 'downsample_padding', 1, B.kernel, 0),
    mid_block_scale_factor: positive(json, 'mid_block_scale_factor', 1, 1e3),
    time_embedding_dim: json.time_embedding_dim == null ? undefined : int(json, 'time_embedding_dim', 0, B.channels),
    conv_in_kernel: int(json, 'conv_in_kernel', 3, B.kernel),
    conv_out_kernel: int(json, 'conv_out_kernel', 3, B.kernel),
    ...additionEmbedding(json),
  };
  if (c.addition_embed_type === 'text_time') {
    const timeDim = c.addition_time_embed_dim!;
    if (timeDim % 2) fail(`addition_time_embed_dim must be even, got ${timeDim}`);
    if (c.projection_class_embeddings_input_dim! <= 6 * timeDim) {
      fail(`projection_class_embeddings_input_dim ${c.projection_class_embeddings_input_dim} leaves no room for the pooled text embedding beside 6 × addition_time_embed_dim ${timeDim}`);
    }
  }
  for (const k of [c.conv_in_kernel, c.conv_out_kernel]) if (k % 2 !== 1) fail(`conv kernels must be odd, got ${k}`);
  const ungrouped = block_out_channels.find((ch) => ch % c.norm_num_groups);
  if (ungrouped !== undefined) fail(`${ungrouped} channels do not split into norm_num_groups=${c.norm_num_groups}`);
  if (Math.abs(c.freq_shift) >= block_out_channels[0] / 2) fail(`freq_shift ${c.freq_shift} must be smaller than half the time embedding's ${block_out_channels[0] / 2} frequencies`);
  return c;
}
