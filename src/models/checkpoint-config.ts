// The diffusers configs of a single-file Stable Diffusion checkpoint, which carries none of its own:
// either read from an original-style (CompVis / Stability) YAML such as `v1-inference.yaml`, or
// recognised from the shapes of a few tensors when the checkpoint is a standard SD 1.x or 2.x.
// The results are plain JSON objects with diffusers' field names, as a diffusers folder's
// config.json files would hold them, so the same parsers read both. Recognition by shapes is in
// checkpoint-detect.ts.

import { parse as parseYaml } from 'yaml';
import type { SafetensorsFile } from '../engine/safetensors.ts';

/** Which text encoder the checkpoint carries: OpenAI CLIP ViT-L/14 (SD 1.x) or OpenCLIP ViT-H/14 (SD 2.x). */
export type CheckpointKind = 'sd1' | 'sd2';

// Type aliases rather than interfaces, so that they are assignable to Record<string, unknown>.
export type UNetConfigJson = {
  _class_name: 'UNet2DConditionModel';
  sample_size: number;
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  cross_attention_dim: number;
  /** Heads per block (diffusers' historical name): 8 for SD 1.x, [5, 10, 20, 20] for SD 2.x. */
  attention_head_dim: number | number[];
  use_linear_projection: boolean;
  transformer_layers_per_block: number;
  /** An LCM-distilled UNet's guidance embedding width, read off its cond_proj tensor. */
  time_cond_proj_dim?: number;
};

export type VaeConfigJson = {
  _class_name: 'AutoencoderKL';
  sample_size: number;
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  latent_channels: number;
  scaling_factor: number;
};

export type TextEncoderConfigJson = {
  architectures: ['CLIPTextModel'];
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  vocab_size: number;
  hidden_act: 'quick_gelu' | 'gelu';
  layer_norm_eps: number;
  bos_token_id: number;
  eos_token_id: number;
  pad_token_id: number;
};

export type SchedulerConfigJson = {
  _class_name: string;
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: 'scaled_linear' | 'squaredcos_cap_v2';
  prediction_type: 'epsilon' | 'v_prediction';
  set_alpha_to_one: boolean;
  skip_prk_steps: boolean;
  steps_offset: number;
  timestep_spacing: 'leading';
  clip_sample: boolean;
};

export interface SingleFileConfig {
  kind: CheckpointKind;
  unet: UNetConfigJson;
  vae: VaeConfigJson;
  text_encoder: TextEncoderConfigJson;
  scheduler: SchedulerConfigJson;
  /** Things the user should know: guesses made, options that override them. */
  notes: string[];
}

export const UNET_PREFIX = 'model.diffusion_model.';
export const VAE_PREFIX = 'first_stage_model.';
export const SD1_TEXT_PREFIX = 'cond_stage_model.transformer.';
export const SD2_TEXT_PREFIX = 'cond_stage_model.model.';

/** SD 1.x or 2.x from the text encoder's key style; anything else is refused by name. */
export function checkpointKind(file: SafetensorsFile): CheckpointKind {
  const names = file.names();
  if (names.some((n) => n.startsWith(SD2_TEXT_PREFIX))) return 'sd2';
  if (names.some((n) => n.startsWith(SD1_TEXT_PREFIX))) return 'sd1';
  const sdxl = names.some((n) => n.startsWith('conditioner.embedders.'));
  throw new Error(
    `${file.path}: not a Stable Diffusion 1.x/2.x single-file checkpoint: ` +
      (sdxl ? 'it has SDXL text encoders (conditioner.embedders.*): load it with loadStableDiffusion (models/single-file-sdxl.ts)'
        : `it has no text encoder tensors (${SD1_TEXT_PREFIX}* or ${SD2_TEXT_PREFIX}*)`),
  );
}

// ---- original-style YAML -------------------------------------------------------------------------

type Yaml = Record<string, unknown>;

function fail(message: string): never {
  throw new Error(`checkpoint config: ${message}`);
}

function section(parent: Yaml, key: string, where: string): Yaml {
  const v = parent[key];
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`${where}.${key} must be a mapping`);
  return v as Yaml;
}

function int(params: Yaml, key: string, where: string, fallback?: number): number {
  const v = params[key] ?? fallback;
  if (!Number.isInteger(v)) fail(`${where}.${key} must be an integer, got ${JSON.stringify(v)}`);
  return v as number;
}

function num(params: Yaml, key: string, where: string, fallback: number): number {
  const v = params[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${where}.${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function ints(params: Yaml, key: string, where: string, fallback?: number[]): number[] {
  const v = params[key] ?? fallback;
  if (!Array.isArray(v) || !v.every(Number.isInteger)) fail(`${where}.${key} must be a list of integers, got ${JSON.stringify(v)}`);
  return v as number[];
}

/**
 * The diffusers configs described by an original-style YAML config (`model.params.unet_config`,
 * `first_stage_config`, `cond_stage_config`, `scale_factor`, …). The text encoder's widths come
 * from the checkpoint's own tensors, since the YAML only names the encoder's class.
 */
export function parseOriginalConfig(yamlText: string, file: SafetensorsFile): SingleFileConfig {
  const root = parseYaml(yamlText) as unknown;
  if (typeof root !== 'object' || root === null) fail('the YAML must be a mapping with a "model" key');
  const model = section(section(root as Yaml, 'model', '(root)'), 'params', 'model');
  const where = 'model.params';
  const unetParams = section(section(model, 'unet_config', where), 'params', `${where}.unet_config`);
  const ddconfig = section(section(section(model, 'first_stage_config', where), 'params', `${where}.first_stage_config`), 'ddconfig', `${where}.first_stage_config.params`);
  const cond = section(model, 'cond_stage_config', where);

  const kind = kindOfCondStage(cond.target);
  if (kind !== checkpointKind(file)) fail(`cond_stage_config.target ${String(cond.target)} does not match the checkpoint's text encoder tensors (${checkpointKind(file)})`);

  const vaeScale = 2 ** (ints(ddconfig, 'ch_mult', 'ddconfig').length - 1);
  // model.params.image_size is the latent size (64 for SD 1.x); unet_config's own image_size is unused by LDM.
  const latentSize = int(model, 'image_size', where, int(unetParams, 'image_size', 'unet_config.params', 64));
  const unet = unetFromOriginal(unetParams, latentSize);
  const vae = vaeFromOriginal(ddconfig, section(model, 'first_stage_config', where), latentSize * vaeScale, num(model, 'scale_factor', where, 0.18215));
  const condParams = (cond.params ?? {}) as Yaml;
  const layer = condParams.layer ?? 'last';
  if (layer !== 'last' && !(kind === 'sd2' && layer === 'penultimate')) fail(`cond_stage_config.params.layer ${JSON.stringify(layer)} is not supported with ${String(cond.target)}`);
  const text = measureTextEncoder(file, kind, layer === 'penultimate', condParams.num_heads);

  const parameterization = model.parameterization ?? 'eps';
  if (parameterization !== 'eps' && parameterization !== 'v') fail(`parameterization ${JSON.stringify(parameterization)} is not supported (eps or v)`);
  const betaSchedule = model.beta_schedule ?? 'linear';
  // LDM's "linear" schedule is linear in √β, which diffusers calls scaled_linear.
  const schedules: Record<string, SchedulerConfigJson['beta_schedule']> = { linear: 'scaled_linear', cosine: 'squaredcos_cap_v2' };
  const schedule = schedules[String(betaSchedule)];
  if (!schedule) fail(`beta_schedule ${JSON.stringify(betaSchedule)} is not supported (linear or cosine)`);
  const scheduler = schedulerConfig(parameterization === 'v' ? 'v_prediction' : 'epsilon', {
    num_train_timesteps: int(model, 'timesteps', where, 1000),
    beta_start: num(model, 'linear_start', where, 0.00085),
    beta_end: num(model, 'linear_end', where, 0.012),
    beta_schedule: schedule,
  });
  return { kind, unet, vae, text_encoder: text, scheduler, notes: [] };
}

function kindOfCondStage(target: unknown): CheckpointKind {
  const cls = String(target).split('.').pop();
  if (cls === 'FrozenCLIPEmbedder') return 'sd1';
  if (cls === 'FrozenOpenCLIPEmbedder') return 'sd2';
  return fail(`cond_stage_config.target ${JSON.stringify(target)} is not supported (FrozenCLIPEmbedder or FrozenOpenCLIPEmbedder)`);
}

function unetFromOriginal(p: Yaml, sampleSize: number): UNetConfigJson {
  const where = 'unet_config.params';
  if (p.use_spatial_transformer === false) fail(`${where}.use_spatial_transformer: false (a UNet without cross-attention) is not supported`);
  const modelChannels = int(p, 'model_channels', where);
  const mult = ints(p, 'channel_mult', where);
  const attentionResolutions = ints(p, 'attention_resolutions', where);
  const channels = mult.map((m) => m * modelChannels);
  // Level i works at downsampling factor 2^i; it has cross-attention when that factor is listed.
  const attends = channels.map((_, i) => attentionResolutions.includes(2 ** i));
  const numHeads = p.num_heads === undefined ? -1 : int(p, 'num_heads', where);
  const headChannels = p.num_head_channels === undefined ? -1 : int(p, 'num_head_channels', where);
  let heads: number | number[];
  if (headChannels > 0) {
    const bad = channels.find((c) => c % headChannels !== 0);
    if (bad !== undefined) fail(`${where}.num_head_channels ${headChannels} does not divide ${bad} channels`);
    heads = channels.map((c) => c / headChannels);
  } else if (numHeads > 0) {
    heads = numHeads;
  } else {
    fail(`${where} needs num_heads or num_head_channels`);
  }
  const depth = p.transformer_depth ?? 1;
  if (!Number.isInteger(depth)) fail(`${where}.transformer_depth must be one integer, got ${JSON.stringify(depth)}`);
  if (p.num_classes !== undefined && p.num_classes !== null) fail(`${where}.num_classes (class-conditioned UNet) is not supported`);
  return {
    _class_name: 'UNet2DConditionModel',
    sample_size: sampleSize,
    in_channels: int(p, 'in_channels', where),
    out_channels: int(p, 'out_channels', where),
    down_block_types: attends.map((a) => (a ? 'CrossAttnDownBlock2D' : 'DownBlock2D')),
    up_block_types: [...attends].reverse().map((a) => (a ? 'CrossAttnUpBlock2D' : 'UpBlock2D')),
    block_out_channels: channels,
    layers_per_block: int(p, 'num_res_blocks', where),
    cross_attention_dim: int(p, 'context_dim', where),
    attention_head_dim: heads,
    use_linear_projection: p.use_linear_in_transformer === true,
    transformer_layers_per_block: depth as number,
  };
}

function vaeFromOriginal(dd: Yaml, firstStage: Yaml, sampleSize: number, scalingFactor: number): VaeConfigJson {
  const where = 'ddconfig';
  const channels = ints(dd, 'ch_mult', where).map((m) => m * int(dd, 'ch', where));
  const z = int(dd, 'z_channels', where);
  if (ints(dd, 'attn_resolutions', where, []).length) fail(`${where}.attn_resolutions must be empty: AutoencoderKL has attention only in its mid block`);
  if (dd.double_z === false) fail(`${where}.double_z: false is not supported (AutoencoderKL encodes a mean and a log-variance)`);
  const embedDim = (firstStage.params as Yaml).embed_dim;
  if (embedDim !== undefined && embedDim !== z) fail(`first_stage_config embed_dim ${String(embedDim)} differs from z_channels ${z}, which AutoencoderKL does not support`);
  return {
    _class_name: 'AutoencoderKL',
    sample_size: sampleSize,
    in_channels: int(dd, 'in_channels', where),
    out_channels: int(dd, 'out_ch', where),
    down_block_types: channels.map(() => 'DownEncoderBlock2D'),
    up_block_types: channels.map(() => 'UpDecoderBlock2D'),
    block_out_channels: channels,
    layers_per_block: int(dd, 'num_res_blocks', where),
    latent_channels: z,
    scaling_factor: scalingFactor,
  };
}

export function schedulerConfig(
  prediction: SchedulerConfigJson['prediction_type'],
  betas: Pick<SchedulerConfigJson, 'num_train_timesteps' | 'beta_start' | 'beta_end' | 'beta_schedule'>,
): SchedulerConfigJson {
  return {
    _class_name: 'PNDMScheduler',
    ...betas,
    prediction_type: prediction,
    set_alpha_to_one: false,
    skip_prk_steps: true,
    steps_offset: 1,
    timestep_spacing: 'leading',
    clip_sample: false,
  };
}

// ---- the text encoder, measured from its tensors ---------------------------------------------------

/** Text encoder tensor names (under the kind's prefix) that give its widths. */
const TEXT_PROBES = {
  sd1: {
    token: 'text_model.embeddings.token_embedding.weight',
    position: 'text_model.embeddings.position_embedding.weight',
    fc1: 'text_model.encoder.layers.0.mlp.fc1.weight',
    layer: (i: number) => `text_model.encoder.layers.${i}.layer_norm1.weight`,
  },
  sd2: {
    token: 'token_embedding.weight',
    position: 'positional_embedding',
    fc1: 'transformer.resblocks.0.mlp.c_fc.weight',
    layer: (i: number) => `transformer.resblocks.${i}.ln_1.weight`,
  },
};

/** The SD 1.x text tensor's full name; old files lack the `text_model.` infix. */
export function sd1TextName(file: SafetensorsFile, name: string): string {
  const full = SD1_TEXT_PREFIX + name;
  return file.has(full) ? full : SD1_TEXT_PREFIX + name.replace(/^text_model\./, '');
}

export function textTensorName(file: SafetensorsFile, kind: CheckpointKind, name: string): string {
  return kind === 'sd1' ? sd1TextName(file, name) : SD2_TEXT_PREFIX + name;
}

function countLayers(file: SafetensorsFile, kind: CheckpointKind): number {
  let n = 0;
  while (file.has(textTensorName(file, kind, TEXT_PROBES[kind].layer(n)))) n++;
  return n;
}

/**
 * The text encoder's config from its tensor shapes. `penultimate` drops the last layer, as SD 2.x
 * uses the penultimate layer's output. The head count is not in any shape: it is `explicitHeads`
 * when given, else hidden/64 (every released CLIP text tower has 64-wide heads).
 */
export function measureTextEncoder(file: SafetensorsFile, kind: CheckpointKind, penultimate: boolean, explicitHeads?: unknown): TextEncoderConfigJson {
  const shape = (name: string): number[] => {
    const full = textTensorName(file, kind, name);
    if (!file.has(full)) fail(`${file.path} has no text encoder tensor ${full}`);
    return file.entry(full).shape;
  };
  const [vocab, hidden] = shape(TEXT_PROBES[kind].token) as [number, number];
  const positions = shape(TEXT_PROBES[kind].position)[0]!;
  const intermediate = shape(TEXT_PROBES[kind].fc1)[0]!;
  const layers = countLayers(file, kind) - (penultimate ? 1 : 0);
  let heads: number;
  if (explicitHeads !== undefined) {
    if (!Number.isInteger(explicitHeads) || hidden % (explicitHeads as number) !== 0) fail(`cond_stage_config.params.num_heads must divide the text width ${hidden}, got ${JSON.stringify(explicitHeads)}`);
    heads = explicitHeads as number;
  } else if (hidden % 64 === 0) {
    heads = hidden / 64;
  } else {
    fail(
      `the text encoder is ${hidden} wide, not a multiple of CLIP's 64-wide heads, so its head count cannot be inferred: ` +
        'add "num_heads: N" under model.params.cond_stage_config.params in the YAML',
    );
  }
  return textConfig(kind, { hidden_size: hidden, intermediate_size: intermediate, num_hidden_layers: layers, num_attention_heads: heads, max_position_embeddings: positions, vocab_size: vocab });
}

export function textConfig(
  kind: CheckpointKind,
  widths: Pick<TextEncoderConfigJson, 'hidden_size' | 'intermediate_size' | 'num_hidden_layers' | 'num_attention_heads' | 'max_position_embeddings' | 'vocab_size'>,
): TextEncoderConfigJson {
  return {
    architectures: ['CLIPTextModel'],
    ...widths,
    hidden_act: kind === 'sd1' ? 'quick_gelu' : 'gelu',
    layer_norm_eps: 1e-5,
    bos_token_id: 49406,
    eos_token_id: 49407,
    // SD 2.x's tokenizer pads with "!" (id 0); SD 1.x's with <|endoftext|>.
    pad_token_id: kind === 'sd1' ? 49407 : 0,
  };
}
