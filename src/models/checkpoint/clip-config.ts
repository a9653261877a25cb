// transformers' CLIP configs (CLIPTextConfig, CLIPVisionConfig, CLIPConfig) by their own field
// names, with transformers' defaults for absent fields and every size bounded.

import { CONFIG_BOUNDS as B } from './bounds.ts';
import { type ConfigJson, inFile } from './config-file.ts';
import { ConfigReader } from './config-reader.ts';

/** transformers' `hidden_act` names that CLIP checkpoints use. */
export const CLIP_ACTIVATIONS = ['quick_gelu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh'] as const;
export type ClipActivation = (typeof CLIP_ACTIVATIONS)[number];

/** The fields of CLIPTextConfig / CLIPVisionConfig that shape the encoder. */
export interface ClipEncoderConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  hidden_act: ClipActivation;
  layer_norm_eps: number;
  /** Scales every initial standard deviation. */
  initializer_factor: number;
}

export interface ClipTextConfig extends ClipEncoderConfig {
  vocab_size: number;
  max_position_embeddings: number;
  projection_dim: number;
  /** Pooling position: the first token with this id (legacy configs with id 2 pool at argmax(ids)). */
  eos_token_id: number;
  /** CLIPTextModelWithProjection (SDXL's second encoder, CLIPModel): a bias-free `text_projection`. Not a config field: the class. */
  with_projection: boolean;
}

export interface ClipVisionConfig extends ClipEncoderConfig {
  num_channels: number;
  image_size: number;
  patch_size: number;
  projection_dim: number;
  initializer_range: number;
  /** CLIPVisionModelWithProjection / CLIPModel: a bias-free `visual_projection` after pooling. Not a config field: the class. */
  with_projection: boolean;
}

export interface ClipConfig {
  text_config: ClipTextConfig;
  vision_config: ClipVisionConfig;
  projection_dim: number;
  /** Initial log of the logit scale: ln(1/0.07) ≈ 2.6592, as in the CLIP paper. */
  logit_scale_init_value: number;
}

type EncoderDefaults = Pick<ClipEncoderConfig, 'hidden_size' | 'intermediate_size' | 'num_hidden_layers' | 'num_attention_heads'>;

function encoderConfig(c: ConfigReader, defaults: EncoderDefaults): ClipEncoderConfig {
  const config: ClipEncoderConfig = {
    hidden_size: c.int('hidden_size', defaults.hidden_size, B.channels),
    intermediate_size: c.int('intermediate_size', defaults.intermediate_size, B.channels),
    num_hidden_layers: c.int('num_hidden_layers', defaults.num_hidden_layers, B.layers),
    num_attention_heads: c.int('num_attention_heads', defaults.num_attention_heads, B.heads),
    hidden_act: c.oneOf('hidden_act', CLIP_ACTIVATIONS, 'quick_gelu'),
    // ε = 0 or below gives NaN on the first constant input.
    layer_norm_eps: c.number('layer_norm_eps', 1e-5, 0, 1),
    initializer_factor: c.finite('initializer_factor', 1),
  };
  if (config.hidden_size % config.num_attention_heads) {
    throw new Error(`"hidden_size" ${config.hidden_size} does not split into "num_attention_heads" ${config.num_attention_heads}`);
  }
  return config;
}

function architectures(json: ConfigJson): unknown[] {
  return Array.isArray(json.architectures) ? json.architectures : [];
}

/** A text_encoder/config.json (CLIPTextConfig). */
export function parseClipTextConfig(json: ConfigJson): ClipTextConfig {
  const c = new ConfigReader(json);
  return {
    ...encoderConfig(c, { hidden_size: 512, intermediate_size: 2048, num_hidden_layers: 12, num_attention_heads: 8 }),
    vocab_size: c.int('vocab_size', 49408, B.vocabulary),
    max_position_embeddings: c.int('max_position_embeddings', 77, B.positions),
    projection_dim: c.int('projection_dim', 512, B.channels),
    eos_token_id: c.int('eos_token_id', 2, B.vocabulary),
    with_projection: architectures(json).includes('CLIPTextModelWithProjection'),
  };
}

/** A CLIPVisionConfig config.json (or CLIPConfig's vision_config). */
export function parseClipVisionConfig(json: ConfigJson): ClipVisionConfig {
  const c = new ConfigReader(json);
  const config: ClipVisionConfig = {
    ...encoderConfig(c, { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12 }),
    num_channels: c.int('num_channels', 3, B.channels),
    image_size: c.int('image_size', 224, B.sampleSize),
    patch_size: c.int('patch_size', 32, B.sampleSize),
    projection_dim: c.int('projection_dim', 512, B.channels),
    initializer_range: c.finite('initializer_range', 0.02),
    with_projection: architectures(json).includes('CLIPVisionModelWithProjection'),
  };
  if (config.image_size % config.patch_size) throw new Error(`"image_size" ${config.image_size} is not a multiple of "patch_size" ${config.patch_size}`);
  return config;
}

/** A CLIPModel config.json: text_config, vision_config, projection_dim, logit_scale_init_value. */
export function parseClipConfig(json: ConfigJson): ClipConfig {
  const c = new ConfigReader(json);
  const section = (field: string): ConfigJson => {
    const v = c.raw(field) ?? {};
    return typeof v === 'object' && !Array.isArray(v) ? (v as ConfigJson) : c.fail(field, 'an object');
  };
  const projection_dim = c.int('projection_dim', 512, B.channels);
  // CLIPModel's projection size wins over the towers' own projection_dim fields.
  return {
    text_config: { ...inFile('text_config', () => parseClipTextConfig(section('text_config'))), projection_dim, with_projection: true },
    vision_config: { ...inFile('vision_config', () => parseClipVisionConfig(section('vision_config'))), projection_dim, with_projection: true },
    projection_dim,
    logit_scale_init_value: c.finite('logit_scale_init_value', 2.6592),
  };
}
