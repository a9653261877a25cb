// Single-file Stable Diffusion checkpoints (the original CompVis / Stability layout in one
// .safetensors: `model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.*`) read in place:
// each diffusers parameter name is mapped to the tensor that holds its bytes, so the models bind to
// the file exactly as they bind to a diffusers folder, with no conversion and no copy.
// The mapping follows diffusers' conversion (`single_file_utils.py`); the names are theirs.

import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import type { RowRange } from '../engine/parameter.ts';
import { SafetensorsFile } from '../engine/safetensors.ts';
import { bindLocated, type TensorLocator } from './checkpoint/bind.ts';
import { inFile } from './checkpoint/config-file.ts';
import { ClipTokenizer } from '../tokenizers/clip.ts';
import { ClipTextModel } from './clip-text.ts';
import { parseClipTextConfig } from './checkpoint/clip-config.ts';
import { UNet2DConditionModel } from './unet.ts';
import { parseUNetConfig } from './checkpoint/unet-config.ts';
import { AutoencoderKL } from './vae.ts';
import { parseVaeConfig } from './checkpoint/vae-config.ts';
import {
  checkpointKind, type CheckpointKind, parseOriginalConfig, SD1_TEXT_PREFIX, SD2_TEXT_PREFIX, type SingleFileConfig,
  UNET_PREFIX, VAE_PREFIX,
} from './checkpoint-config.ts';
import { detectSingleFileConfig } from './checkpoint-detect.ts';

/** Where one diffusers parameter's bytes are in the single file. */
export interface MappedTensor {
  tensorName: string;
  /** The stored shape differs but holds the same elements in order (VAE attention: conv [C,C,1,1] for linear [C,C]). */
  sameBytes?: boolean;
  /** Only these rows of the stored tensor (q, k or v of OpenCLIP's fused in_proj). */
  rows?: RowRange;
}

export type ParameterMap = Map<string, MappedTensor>;

export interface SingleFileMapping {
  unet: ParameterMap;
  vae: ParameterMap;
  textEncoder: ParameterMap;
  /** Tensors of the file that no parameter uses and that are not known to be ignorable. */
  unmapped: string[];
  /** Tensors known to be unused: EMA copies, noise-schedule buffers, position ids, … */
  ignored: string[];
}

// The fields of each diffusers config.json that the key mapping needs.
export type UNetLayout = {
  layers_per_block: number;
  down_block_types: readonly string[];
  up_block_types: readonly string[];
  transformer_layers_per_block?: number | readonly number[];
  addition_embed_type?: string | null;
  time_cond_proj_dim?: number | null;
};
type VaeLayout = { layers_per_block: number; block_out_channels: readonly number[] };
type TextLayout = { num_hidden_layers: number; hidden_size: number };

/** A diffusers name, with how to read it from the stored tensor. */
export type Target = { name: string; sameBytes?: boolean; rows?: RowRange };

// ---- pickles ---------------------------------------------------------------------------------------

const PICKLE_EXTENSIONS = ['.ckpt', '.bin', '.pt', '.pth', '.pkl', '.pickle'];

/**
 * Refuses PyTorch pickle checkpoints by extension or by their first bytes (a zip archive, as
 * `torch.save` writes, or a binary pickle's protocol header). Nothing of the file is parsed.
 */
export function assertNotPickle(path: string): void {
  const ext = extname(path).toLowerCase();
  let why = PICKLE_EXTENSIONS.includes(ext) ? `a ${ext} file` : undefined;
  if (!why && statSync(path, { throwIfNoEntry: false })?.isFile()) {
    const head = Buffer.alloc(9);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, head, 0, 9, 0);
    } finally {
      closeSync(fd);
    }
    // A safetensors file's JSON header opens at byte 8, which tells its length apart from a pickle header.
    if (head.subarray(0, 4).equals(Buffer.from('PK\x03\x04', 'latin1'))) why = 'a zip archive (PyTorch\'s torch.save format)';
    else if (head[0] === 0x80 && head[1]! >= 2 && head[1]! <= 5 && head[8] !== 0x7b) why = 'a Python pickle';
  }
  if (why) {
    throw new Error(
      `refusing to load ${path}: it is ${why}. Loading a pickle runs whatever code it contains, so Nuri never opens one. ` +
        'Convert it to .safetensors with a tool you trust (in a sandbox if its source is unknown), ' +
        'or use the model as a diffusers folder with .safetensors weights.',
    );
  }
}

// ---- ignorable tensors ---------------------------------------------------------------------------

/** Buffers of LDM's DDPM class (the noise schedule, recomputed from the config) and other state no model uses. */
const IGNORED_NAMES = new Set([
  'betas', 'alphas_cumprod', 'alphas_cumprod_prev', 'sqrt_alphas_cumprod', 'sqrt_one_minus_alphas_cumprod',
  'log_one_minus_alphas_cumprod', 'sqrt_recip_alphas_cumprod', 'sqrt_recipm1_alphas_cumprod', 'posterior_variance',
  'posterior_log_variance_clipped', 'posterior_mean_coef1', 'posterior_mean_coef2', 'logvar', 'lvlb_weights',
  `${SD1_TEXT_PREFIX}text_model.embeddings.position_ids`, `${SD1_TEXT_PREFIX}embeddings.position_ids`,
  // OpenCLIP's contrastive head; SD 2.x uses the token states, not the projected embedding.
  `${SD2_TEXT_PREFIX}text_projection`, `${SD2_TEXT_PREFIX}logit_scale`,
]);

/** EMA copies of the UNet (the regular weights are used) and the VAE's training loss (LPIPS, discriminator). */
const IGNORED_PREFIXES = ['model_ema.', `${VAE_PREFIX}loss.`];

function isIgnorable(name: string, kind: CheckpointKind, text: TextLayout): boolean {
  if (IGNORED_NAMES.has(name) || IGNORED_PREFIXES.some((p) => name.startsWith(p))) return true;
  // SD 2.x takes the penultimate layer's output: the OpenCLIP layers past it are unused.
  const block = kind === 'sd2' ? /^cond_stage_model\.model\.transformer\.resblocks\.(\d+)\./.exec(name) : null;
  return block !== null && Number(block[1]) >= text.num_hidden_layers;
}

// ---- UNet ----------------------------------------------------------------------------------------

const RESNET_NAMES: Record<string, string> = {
  'in_layers.0': 'norm1', 'in_layers.2': 'conv1', 'out_layers.0': 'norm2', 'out_layers.3': 'conv2',
  'emb_layers.1': 'time_emb_proj', 'skip_connection': 'conv_shortcut',
};

function unetResnet(prefix: string, rest: string): string | undefined {
  const m = /^(.+)\.(weight|bias)$/.exec(rest);
  const local = m ? RESNET_NAMES[m[1]!] : undefined;
  return local && `${prefix}.${local}.${m![2]}`;
}

/** Transformer2DModel names are the same in both layouts; only known ones pass. */
function unetAttention(prefix: string, rest: string, depth: number): string | undefined {
  const m = /^transformer_blocks\.(\d+)\.(attn[12]\.to_[qkv]\.weight|attn[12]\.to_out\.0\.(weight|bias)|ff\.net\.(0\.proj|2)\.(weight|bias)|norm[123]\.(weight|bias))$/.exec(rest);
  if (m) return Number(m[1]) < depth ? `${prefix}.${rest}` : undefined;
  return /^(norm|proj_in|proj_out)\.(weight|bias)$/.test(rest) ? `${prefix}.${rest}` : undefined;
}

/**
 * LDM numbers the UNet's layers flat: input_blocks.0 is conv_in, then each level has
 * layers_per_block × [resnet (.0), attention (.1)] and, except the last level, a downsampler
 * (`.0.op`); output_blocks has layers_per_block + 1 per level, the upsampler after the last one
 * (`.1.conv`, or `.2.conv` when the layer has an attention). SDXL (SGM) adds `label_emb`, the
 * added-condition embedding, and transformer depths per level (the mid block takes the deepest's).
 */
export function unetName(key: string, config: UNetLayout): string | undefined {
  const perLevel = config.layers_per_block + 1;
  const levels = config.down_block_types.length;
  const depths = config.transformer_layers_per_block ?? 1;
  const depthAt = (level: number) => (typeof depths === 'number' ? depths : depths[level] ?? 1);
  let m: RegExpExecArray | null;
  if ((m = /^time_embed\.([02])\.(weight|bias)$/.exec(key))) return `time_embedding.linear_${m[1] === '0' ? 1 : 2}.${m[2]}`;
  // LCM-distilled checkpoints keep diffusers' name for the guidance projection; some converters write time_embed.
  if (/^time_embed(ding)?\.cond_proj\.weight$/.test(key)) return config.time_cond_proj_dim ? 'time_embedding.cond_proj.weight' : undefined;
  if ((m = /^label_emb\.0\.([02])\.(weight|bias)$/.exec(key))) return config.addition_embed_type !== 'text_time' ? undefined : `add_embedding.linear_${m[1] === '0' ? 1 : 2}.${m[2]}`;
  if ((m = /^input_blocks\.0\.0\.(weight|bias)$/.exec(key))) return `conv_in.${m[1]}`;
  if ((m = /^out\.([02])\.(weight|bias)$/.exec(key))) return `${m[1] === '0' ? 'conv_norm_out' : 'conv_out'}.${m[2]}`;
  if ((m = /^input_blocks\.(\d+)\.([01])\.(.+)$/.exec(key))) {
    const index = Number(m[1]) - 1;
    const level = Math.floor(index / perLevel);
    const layer = index % perLevel;
    const [part, rest] = [m[2], m[3]!];
    if (index < 0 || level >= levels) return undefined;
    if (layer === config.layers_per_block) {
      const op = /^op\.(weight|bias)$/.exec(rest);
      return op && part === '0' && level < levels - 1 ? `down_blocks.${level}.downsamplers.0.conv.${op[1]}` : undefined;
    }
    if (part === '0') return unetResnet(`down_blocks.${level}.resnets.${layer}`, rest);
    return config.down_block_types[level] === 'CrossAttnDownBlock2D' ? unetAttention(`down_blocks.${level}.attentions.${layer}`, rest, depthAt(level)) : undefined;
  }
  if ((m = /^middle_block\.([012])\.(.+)$/.exec(key))) {
    if (m[1] === '1') return unetAttention('mid_block.attentions.0', m[2]!, depthAt(levels - 1));
    return unetResnet(`mid_block.resnets.${m[1] === '0' ? 0 : 1}`, m[2]!);
  }
  if ((m = /^output_blocks\.(\d+)\.([012])\.(.+)$/.exec(key))) {
    const index = Number(m[1]);
    const level = Math.floor(index / perLevel);
    const layer = index % perLevel;
    const [part, rest] = [m[2], m[3]!];
    if (level >= levels) return undefined;
    const attends = config.up_block_types[level] === 'CrossAttnUpBlock2D';
    const conv = /^conv\.(weight|bias)$/.exec(rest);
    if (conv) {
      const upsampler = layer === config.layers_per_block && level < levels - 1 && part === (attends ? '2' : '1');
      return upsampler ? `up_blocks.${level}.upsamplers.0.conv.${conv[1]}` : undefined;
    }
    if (part === '0') return unetResnet(`up_blocks.${level}.resnets.${layer}`, rest);
    return part === '1' && attends ? unetAttention(`up_blocks.${level}.attentions.${layer}`, rest, depthAt(levels - 1 - level)) : undefined;
  }
  return undefined;
}

// ---- VAE -----------------------------------------------------------------------------------------

const VAE_ATTENTION_NAMES: Record<string, string> = { norm: 'group_norm', q: 'to_q', k: 'to_k', v: 'to_v', proj_out: 'to_out.0' };

function vaeResnet(prefix: string, rest: string): string | undefined {
  const m = /^(norm1|conv1|norm2|conv2|nin_shortcut)\.(weight|bias)$/.exec(rest);
  return m ? `${prefix}.${m[1] === 'nin_shortcut' ? 'conv_shortcut' : m[1]}.${m[2]}` : undefined;
}

/** The decoder's `up` levels are numbered from the lowest resolution up, diffusers' `up_blocks` the other way. */
export function vaeTarget(key: string, config: VaeLayout): Target | undefined {
  const levels = config.block_out_channels.length;
  const named = (name: string | undefined): Target | undefined => (name === undefined ? undefined : { name });
  let m: RegExpExecArray | null;
  if (/^(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)$/.test(key) || /^(post_)?quant_conv\.(weight|bias)$/.test(key)) return { name: key };
  if ((m = /^(encoder|decoder)\.norm_out\.(weight|bias)$/.exec(key))) return { name: `${m[1]}.conv_norm_out.${m[2]}` };
  if ((m = /^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/.exec(key))) {
    const [level, layer] = [Number(m[1]), Number(m[2])];
    return level < levels && layer < config.layers_per_block ? named(vaeResnet(`encoder.down_blocks.${level}.resnets.${layer}`, m[3]!)) : undefined;
  }
  if ((m = /^encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)$/.exec(key))) {
    return Number(m[1]) < levels - 1 ? { name: `encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}` } : undefined;
  }
  if ((m = /^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$/.exec(key))) {
    const [level, layer] = [levels - 1 - Number(m[1]), Number(m[2])];
    return level >= 0 && layer <= config.layers_per_block ? named(vaeResnet(`decoder.up_blocks.${level}.resnets.${layer}`, m[3]!)) : undefined;
  }
  if ((m = /^decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)$/.exec(key))) {
    const level = levels - 1 - Number(m[1]);
    return level >= 0 && level < levels - 1 ? { name: `decoder.up_blocks.${level}.upsamplers.0.conv.${m[2]}` } : undefined;
  }
  if ((m = /^(encoder|decoder)\.mid\.block_([12])\.(.+)$/.exec(key))) {
    return named(vaeResnet(`${m[1]}.mid_block.resnets.${Number(m[2]) - 1}`, m[3]!));
  }
  if ((m = /^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$/.exec(key))) {
    const name = `${m[1]}.mid_block.attentions.0.${VAE_ATTENTION_NAMES[m[2]!]}.${m[3]}`;
    // The single file stores q, k, v and proj_out as 1×1 convs [C, C, 1, 1]; diffusers as linears [C, C].
    return m[2] !== 'norm' && m[3] === 'weight' ? { name, sameBytes: true } : { name };
  }
  return undefined;
}

// ---- text encoders -------------------------------------------------------------------------------

const CLIP_LAYER = /^encoder\.layers\.(\d+)\.(layer_norm[12]|mlp\.fc[12]|self_attn\.[qkv]_proj|self_attn\.out_proj)\.(weight|bias)$/;

/** SD 1.x stores a transformers CLIPTextModel as is (old files without the `text_model.` level). */
export function sd1TextTarget(key: string, config: TextLayout): Target | undefined {
  const rest = key.replace(/^text_model\./, '');
  const layer = CLIP_LAYER.exec(rest);
  const known = layer ? Number(layer[1]) < config.num_hidden_layers
    : /^(embeddings\.(token|position)_embedding\.weight|final_layer_norm\.(weight|bias))$/.test(rest);
  return known ? { name: `text_model.${rest}` } : undefined;
}

const OPEN_CLIP_NAMES: Record<string, string> = {
  'ln_1': 'layer_norm1', 'ln_2': 'layer_norm2', 'mlp.c_fc': 'mlp.fc1', 'mlp.c_proj': 'mlp.fc2', 'attn.out_proj': 'self_attn.out_proj',
};

/** SD 2.x stores OpenCLIP's text tower, whose attention keeps q, k and v stacked in one in_proj. */
export function sd2TextTargets(key: string, config: TextLayout): Target[] {
  const top: Record<string, string> = {
    'positional_embedding': 'text_model.embeddings.position_embedding.weight',
    'token_embedding.weight': 'text_model.embeddings.token_embedding.weight',
    'ln_final.weight': 'text_model.final_layer_norm.weight',
    'ln_final.bias': 'text_model.final_layer_norm.bias',
  };
  if (top[key]) return [{ name: top[key] }];
  const m = /^transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)$/.exec(key);
  const inProj = /^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$/.exec(key);
  if (inProj && Number(inProj[1]) < config.num_hidden_layers) {
    const prefix = `text_model.encoder.layers.${inProj[1]}.self_attn`;
    const width = config.hidden_size;
    return ['q', 'k', 'v'].map((p, i) => ({ name: `${prefix}.${p}_proj.${inProj[2]}`, rows: { start: i * width, count: width } }));
  }
  const local = m ? OPEN_CLIP_NAMES[m[2]!] : undefined;
  return m && local && Number(m[1]) < config.num_hidden_layers ? [{ name: `text_model.encoder.layers.${m[1]}.${local}.${m[3]}` }] : [];
}

// ---- the whole file ------------------------------------------------------------------------------

/**
 * Maps every diffusers parameter name of the UNet, VAE and text encoder to its tensor in a
 * single-file checkpoint. Tensors that map to nothing are listed in `unmapped` (unless known to be
 * unused, then in `ignored`); parameters the file lacks show up as missing when the model binds.
 */
export function mapSingleFileKeys(
  file: SafetensorsFile,
  kind: CheckpointKind,
  unetConfig: UNetLayout,
  vaeConfig: VaeLayout,
  textConfig: TextLayout,
): SingleFileMapping {
  const mapping: SingleFileMapping = { unet: new Map(), vae: new Map(), textEncoder: new Map(), unmapped: [], ignored: [] };
  for (const key of file.names()) {
    if (isIgnorable(key, kind, textConfig)) {
      mapping.ignored.push(key);
      continue;
    }
    let into: ParameterMap | undefined;
    let targets: Target[] = [];
    if (key.startsWith(UNET_PREFIX)) {
      into = mapping.unet;
      const name = unetName(key.slice(UNET_PREFIX.length), unetConfig);
      if (name) targets = [{ name }];
    } else if (key.startsWith(VAE_PREFIX)) {
      into = mapping.vae;
      const target = vaeTarget(key.slice(VAE_PREFIX.length), vaeConfig);
      if (target) targets = [target];
    } else if (kind === 'sd1' && key.startsWith(SD1_TEXT_PREFIX)) {
      into = mapping.textEncoder;
      const target = sd1TextTarget(key.slice(SD1_TEXT_PREFIX.length), textConfig);
      if (target) targets = [target];
    } else if (kind === 'sd2' && key.startsWith(SD2_TEXT_PREFIX)) {
      into = mapping.textEncoder;
      targets = sd2TextTargets(key.slice(SD2_TEXT_PREFIX.length), textConfig);
    }
    // A second tensor for the same parameter (say, with and without `text_model.`) is reported, not used.
    const map = into;
    if (!map || !targets.length || targets.some((t) => map.has(t.name))) {
      mapping.unmapped.push(key);
      continue;
    }
    for (const { name, ...how } of targets) map.set(name, { tensorName: key, ...how });
  }
  return mapping;
}

/** The names single files give an LCM-distilled UNet's guidance projection [C, time_cond_proj_dim]. */
const COND_PROJ_KEYS = [`${UNET_PREFIX}time_embedding.cond_proj.weight`, `${UNET_PREFIX}time_embed.cond_proj.weight`];

/**
 * An LCM-distilled UNet in a single file, which names neither its guidance embedding width nor its
 * sampler: the width read off the cond_proj tensor, undefined for other checkpoints.
 */
export function guidanceEmbeddingWidth(file: SafetensorsFile): { key: string; width: number } | undefined {
  const key = COND_PROJ_KEYS.find((k) => file.has(k));
  const shape = key === undefined ? undefined : file.entry(key).shape;
  if (!key || !shape) return undefined;
  if (shape.length !== 2) throw new Error(`${file.path}: tensor "${key}" should be [channels, time_cond_proj_dim], found [${shape.join(', ')}]`);
  return { key, width: shape[1]! };
}

/** A TensorLocator for `bindLocated` over one model's part of the mapping. */
export function singleFileLocator(file: SafetensorsFile, map: ParameterMap): TensorLocator {
  return (name) => {
    const found = map.get(name);
    return found && { file, ...found };
  };
}

export interface SingleFileCheckpoint {
  file: SafetensorsFile;
  config: SingleFileConfig;
  mapping: SingleFileMapping;
  /** Notes from the config, and the file's unmapped tensors if there are any. */
  warnings: string[];
}

/**
 * Opens a single-file checkpoint: refuses pickles, reads the header, takes the configs from the
 * original-style YAML text when given (else recognises a standard SD 1.x / 2.x), and maps the keys.
 */
export function openSingleFileCheckpoint(path: string, options: { originalConfigYaml?: string } = {}): SingleFileCheckpoint {
  assertNotPickle(path);
  const file = SafetensorsFile.open(path);
  const config = options.originalConfigYaml === undefined ? detectSingleFileConfig(file) : parseOriginalConfig(options.originalConfigYaml, file);
  const lcm = guidanceEmbeddingWidth(file);
  if (lcm) {
    config.unet = { ...config.unet, time_cond_proj_dim: lcm.width };
    config.scheduler = { ...config.scheduler, _class_name: 'LCMScheduler' };
    config.notes.push(`${lcm.key}: an LCM-distilled UNet (guidance embedding width ${lcm.width}); it samples with LCMScheduler and no unconditional pass unless --scheduler says otherwise`);
  }
  const mapping = mapSingleFileKeys(file, checkpointKind(file), config.unet, config.vae, config.text_encoder);
  const warnings = [...config.notes];
  if (mapping.unmapped.length) {
    const shown = mapping.unmapped.slice(0, 12).join(', ');
    const more = mapping.unmapped.length > 12 ? ` … and ${mapping.unmapped.length - 12} more` : '';
    warnings.push(`${mapping.unmapped.length} tensor(s) in ${path} belong to no UNet, VAE or text encoder parameter and are unused: ${shown}${more}`);
  }
  return { file, config, mapping, warnings };
}

export interface LoadSingleFileOptions {
  /** Path of the original-style YAML config; without it the checkpoint must be a standard SD 1.x / 2.x. */
  config?: string;
  /**
   * A folder with CLIP's vocab.json and merges.txt (any SD model's `tokenizer/`): single files carry
   * no tokenizer. SD 1.x and 2.x share the vocabulary; SD 2.x pads with "!" instead of <|endoftext|>.
   */
  tokenizer?: string;
  /** Overrides the scheduler's prediction type (SD 2.x 768-v checkpoints are indistinguishable by shape). */
  predictionType?: 'epsilon' | 'v_prediction';
  /** Receives the checkpoint's notes and unused-tensor report; `console.warn` when not given. */
  onWarning?: (message: string) => void;
}

/** The models of a single-file checkpoint, bound to its tensors in place (diffusers folder layout's equivalent). */
export function loadSingleFile(path: string, options: LoadSingleFileOptions = {}) {
  if (options.tokenizer === undefined) {
    throw new Error(`${path}: a single-file checkpoint carries no tokenizer: give a folder with CLIP's vocab.json and merges.txt (e.g. any Stable Diffusion model's tokenizer/)`);
  }
  const yaml = options.config === undefined ? undefined : readFileSync(options.config, 'utf8');
  const { file, config, mapping, warnings } = openSingleFileCheckpoint(path, { originalConfigYaml: yaml });
  for (const w of warnings) (options.onWarning ?? console.warn)(w);
  const unet = inFile(`${path} (its UNet config)`, () => new UNet2DConditionModel(parseUNetConfig(config.unet)));
  bindLocated(unet.parameters(), singleFileLocator(file, mapping.unet), { what: 'UNet', from: path });
  // The configs come from the YAML or the tensors' shapes, so their errors name the checkpoint.
  const vae = inFile(`${path} (its VAE config)`, () => new AutoencoderKL(parseVaeConfig(config.vae)));
  bindLocated(vae.parameters(), singleFileLocator(file, mapping.vae), { what: 'VAE', from: path });
  const textEncoder = inFile(`${path} (its text encoder config)`, () => new ClipTextModel(parseClipTextConfig(config.text_encoder)));
  bindLocated(textEncoder.parameters(), singleFileLocator(file, mapping.textEncoder), { what: 'text encoder', from: path });
  // The same reader and checks as a diffusers folder's tokenizer; the pad token follows the checkpoint's kind.
  const tokenizer = ClipTokenizer.fromFolder(options.tokenizer, { padToken: config.kind === 'sd2' ? '!' : '<|endoftext|>' });
  const schedulerConfig = { ...config.scheduler, ...(options.predictionType ? { prediction_type: options.predictionType } : {}) };
  return { tokenizer, textEncoder, unet, vae, schedulerConfig, name: basename(path) };
}
