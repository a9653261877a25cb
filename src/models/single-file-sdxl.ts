// Single-file SDXL checkpoints (Stability's `sd_xl_base_1.0.safetensors` layout, SGM's names):
//
//   model.diffusion_model.*              the UNet (LDM numbering, plus label_emb = add_embedding)
//   first_stage_model.*                  the VAE (as SD 1.x)
//   conditioner.embedders.0.transformer.*   CLIP ViT-L, stored as transformers' CLIPTextModel
//   conditioner.embedders.1.model.*         OpenCLIP bigG: fused in_proj q/k/v, text_projection [width, proj]
//
// read in place like SD 1.x/2.x files (single-file.ts). The configs are SDXL base's, checked against
// a few tensor shapes, or a diffusers SDXL folder's config.json files (`config`: a folder), as
// diffusers' from_single_file(config=…) takes them.

import { existsSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { SafetensorsFile } from '../engine/safetensors.ts';
import type { DiffusersSchedulerConfig } from '../schedulers/index.ts';
import { ClipTokenizer } from '../tokenizers/clip.ts';
import { bindLocated } from './checkpoint/bind.ts';
import { inFile, readConfigFile } from './checkpoint/config-file.ts';
import { UNET_PREFIX, VAE_PREFIX } from './checkpoint-config.ts';
import { ClipTextModel } from './clip-text.ts';
import { parseClipTextConfig } from './checkpoint/clip-config.ts';
import { type ParameterMap, type Target, assertNotPickle, guidanceEmbeddingWidth, sd1TextTarget, sd2TextTargets, singleFileLocator, unetName, vaeTarget } from './single-file.ts';
import { parseVaeConfig } from './checkpoint/vae-config.ts';
import { UNet2DConditionModel } from './unet.ts';
import { type UNetConfig, parseUNetConfig } from './checkpoint/unet-config.ts';
import { AutoencoderKL } from './vae.ts';

export const SDXL_TEXT1_PREFIX = 'conditioner.embedders.0.transformer.';
export const SDXL_TEXT2_PREFIX = 'conditioner.embedders.1.model.';

type Json = Record<string, unknown>;

/** diffusers' configs of stabilityai/stable-diffusion-xl-base-1.0 (the fields that differ from defaults). */
export const SDXL_BASE_CONFIG = {
  unet: {
    sample_size: 128,
    block_out_channels: [320, 640, 1280],
    down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
    up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
    attention_head_dim: [5, 10, 20],
    transformer_layers_per_block: [1, 2, 10],
    cross_attention_dim: 2048,
    use_linear_projection: true,
    addition_embed_type: 'text_time',
    addition_time_embed_dim: 256,
    projection_class_embeddings_input_dim: 2816,
    layers_per_block: 2,
  },
  vae: {
    sample_size: 1024,
    block_out_channels: [128, 256, 512, 512],
    down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
    up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
    layers_per_block: 2,
    latent_channels: 4,
    scaling_factor: 0.13025,
  },
  text_encoder: { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, hidden_act: 'quick_gelu', projection_dim: 768 },
  text_encoder_2: {
    architectures: ['CLIPTextModelWithProjection'],
    hidden_size: 1280,
    intermediate_size: 5120,
    num_hidden_layers: 32,
    num_attention_heads: 20,
    hidden_act: 'gelu',
    projection_dim: 1280,
  },
  scheduler: {
    _class_name: 'EulerDiscreteScheduler',
    num_train_timesteps: 1000,
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    prediction_type: 'epsilon',
    steps_offset: 1,
    timestep_spacing: 'leading',
  },
} as const;

/** Whether a safetensors file holds SDXL's two text encoders under SGM's names. */
export function isSdxlSingleFile(file: SafetensorsFile): boolean {
  return file.names().some((n) => n.startsWith(SDXL_TEXT2_PREFIX));
}

interface SdxlConfigs {
  unet: Json;
  vae: Json;
  text_encoder: Json;
  text_encoder_2: Json;
  scheduler: Json;
  forceZeros: boolean;
}

/** SDXL base's configs when the file has SDXL base's shapes; otherwise the caller must name a config folder. */
function baseConfigs(file: SafetensorsFile): SdxlConfigs {
  const expected: [string, number[]][] = [
    [`${UNET_PREFIX}input_blocks.0.0.weight`, [320, 4, 3, 3]],
    [`${UNET_PREFIX}label_emb.0.0.weight`, [1280, 2816]],
    [`${UNET_PREFIX}input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight`, [640, 2048]],
    [`${UNET_PREFIX}middle_block.1.transformer_blocks.9.norm1.weight`, [1280]],
    [`${VAE_PREFIX}decoder.conv_in.weight`, [512, 4, 3, 3]],
    [`${SDXL_TEXT1_PREFIX}text_model.embeddings.token_embedding.weight`, [49408, 768]],
    [`${SDXL_TEXT2_PREFIX}token_embedding.weight`, [49408, 1280]],
    [`${SDXL_TEXT2_PREFIX}transformer.resblocks.31.ln_1.weight`, [1280]],
    [`${SDXL_TEXT2_PREFIX}text_projection`, [1280, 1280]],
  ];
  const wrong = expected.filter(([name, shape]) => !file.has(name) || file.entry(name).shape.join() !== shape.join());
  if (wrong.length) {
    const shown = wrong.slice(0, 6).map(([name, shape]) => `${name}: expected [${shape.join(', ')}], found ${file.has(name) ? `[${file.entry(name).shape.join(', ')}]` : 'no such tensor'}`);
    throw new Error(
      `${file.path} is an SDXL single file (conditioner.embedders.*) but not SDXL base's shapes:\n  ${shown.join('\n  ')}\n` +
        'pass --config DIR with a diffusers SDXL folder whose unet/, vae/, text_encoder/, text_encoder_2/ config.json files describe it',
    );
  }
  const c = SDXL_BASE_CONFIG;
  return { unet: { ...c.unet }, vae: { ...c.vae }, text_encoder: { ...c.text_encoder }, text_encoder_2: { ...c.text_encoder_2 }, scheduler: { ...c.scheduler }, forceZeros: true };
}

/** The config.json files of a diffusers SDXL folder (weights there are not read). */
function folderConfigs(dir: string): SdxlConfigs {
  const read = (part: string, name = 'config.json') => readConfigFile(join(dir, part, name), `${part}/${name}`);
  const index = existsSync(join(dir, 'model_index.json')) ? readConfigFile(join(dir, 'model_index.json'), 'model_index.json') : {};
  return {
    unet: read('unet'),
    vae: read('vae'),
    text_encoder: read('text_encoder'),
    text_encoder_2: read('text_encoder_2'),
    scheduler: existsSync(join(dir, 'scheduler', 'scheduler_config.json')) ? read('scheduler', 'scheduler_config.json') : { ...SDXL_BASE_CONFIG.scheduler },
    forceZeros: index.force_zeros_for_empty_prompt !== false,
  };
}

/** Maps every tensor of the file to its model and diffusers name; OpenCLIP's text_projection is kept apart (stored transposed). */
function mapSdxlKeys(file: SafetensorsFile, configs: SdxlConfigs) {
  const unetLayout = inFile(`${file.path} (its UNet config)`, () => parseUNetConfig(configs.unet));
  const vaeLayout = inFile(`${file.path} (its VAE config)`, () => parseVaeConfig(configs.vae));
  const layers = (json: Json) => ({ num_hidden_layers: json.num_hidden_layers as number, hidden_size: json.hidden_size as number });
  const maps = { unet: new Map() as ParameterMap, vae: new Map() as ParameterMap, textEncoder: new Map() as ParameterMap, textEncoder2: new Map() as ParameterMap };
  const unmapped: string[] = [];
  const ignored = [`${SDXL_TEXT1_PREFIX}text_model.embeddings.position_ids`, `${SDXL_TEXT2_PREFIX}logit_scale`, `${SDXL_TEXT2_PREFIX}text_projection`];
  for (const key of file.names()) {
    if (ignored.includes(key) || key.startsWith('model_ema.') || key.startsWith(`${VAE_PREFIX}loss.`)) continue;
    let into: ParameterMap | undefined;
    let targets: Target[] = [];
    if (key.startsWith(UNET_PREFIX)) {
      into = maps.unet;
      const name = unetName(key.slice(UNET_PREFIX.length), { ...unetLayout, layers_per_block: unetLayout.layers_per_block[0] });
      if (name) targets = [{ name }];
    } else if (key.startsWith(VAE_PREFIX)) {
      into = maps.vae;
      const target = vaeTarget(key.slice(VAE_PREFIX.length), vaeLayout);
      if (target) targets = [target];
    } else if (key.startsWith(SDXL_TEXT1_PREFIX)) {
      into = maps.textEncoder;
      const target = sd1TextTarget(key.slice(SDXL_TEXT1_PREFIX.length), layers(configs.text_encoder));
      if (target) targets = [target];
    } else if (key.startsWith(SDXL_TEXT2_PREFIX)) {
      into = maps.textEncoder2;
      targets = sd2TextTargets(key.slice(SDXL_TEXT2_PREFIX.length), layers(configs.text_encoder_2));
    }
    const map = into;
    if (!map || !targets.length || targets.some((t) => map.has(t.name))) {
      unmapped.push(key);
      continue;
    }
    for (const { name, ...how } of targets) map.set(name, { tensorName: key, ...how });
  }
  return { maps, unmapped };
}

export interface LoadSdxlSingleFileOptions {
  /** A diffusers SDXL folder whose config.json files describe the checkpoint (default: SDXL base's, checked by shape). */
  config?: string;
  /** A folder with CLIP's vocab.json and merges.txt: both towers use it (the second pads with "!"). */
  tokenizer?: string;
  onWarning?: (message: string) => void;
}

/** The models of a single-file SDXL checkpoint, bound to its tensors in place. */
export function loadSdxlSingleFile(path: string, options: LoadSdxlSingleFileOptions = {}) {
  assertNotPickle(path);
  if (options.tokenizer === undefined) {
    throw new Error(`${path}: a single-file checkpoint carries no tokenizer: give a folder with CLIP's vocab.json and merges.txt (e.g. any Stable Diffusion model's tokenizer/)`);
  }
  if (options.config !== undefined && !statSync(options.config, { throwIfNoEntry: false })?.isDirectory()) {
    throw new Error(`--config ${options.config}: an SDXL single file takes a diffusers SDXL folder (its unet/, vae/, text_encoder/, text_encoder_2/ config.json files), not an original-style YAML`);
  }
  const file = SafetensorsFile.open(path);
  const configs = options.config === undefined ? baseConfigs(file) : folderConfigs(options.config);
  const lcm = guidanceEmbeddingWidth(file);
  if (lcm && configs.unet.time_cond_proj_dim == null) {
    // SDXL base's configs with an LCM-distilled UNet (LCM-SDXL): its width from the tensor, its sampler LCM's.
    configs.unet = { ...configs.unet, time_cond_proj_dim: lcm.width };
    configs.scheduler = { ...configs.scheduler, _class_name: 'LCMScheduler' };
  }
  const { maps, unmapped } = mapSdxlKeys(file, configs);
  if (unmapped.length) {
    const shown = unmapped.slice(0, 12).join(', ');
    (options.onWarning ?? console.warn)(`${unmapped.length} tensor(s) in ${path} belong to no UNet, VAE or text encoder parameter and are unused: ${shown}${unmapped.length > 12 ? ' …' : ''}`);
  }
  const bind = (params: Parameters<typeof bindLocated>[0], map: ParameterMap, what: string) => bindLocated(params, singleFileLocator(file, map), { what, from: path });
  const unet = new UNet2DConditionModel(parseUNetConfig(configs.unet));
  bind(unet.parameters(), maps.unet, 'UNet');
  const vae = new AutoencoderKL(parseVaeConfig(configs.vae));
  bind(vae.parameters(), maps.vae, 'VAE');
  const textEncoder = inFile(`${path} (its text encoder config)`, () => new ClipTextModel(parseClipTextConfig({ ...configs.text_encoder, architectures: ['CLIPTextModel'] })));
  bind(textEncoder.parameters(), maps.textEncoder, 'text encoder');
  const textEncoder2 = inFile(`${path} (its text encoder 2 config)`, () => new ClipTextModel(parseClipTextConfig({ ...configs.text_encoder_2, architectures: ['CLIPTextModelWithProjection'] })));
  const projection = textEncoder2.textProjection!.weight;
  bind(textEncoder2.parameters().filter((p) => p !== projection), maps.textEncoder2, 'text encoder 2');
  bindTransposed(file, `${SDXL_TEXT2_PREFIX}text_projection`, projection);
  const tokenizer = ClipTokenizer.fromFolder(options.tokenizer, { padToken: '<|endoftext|>' });
  const tokenizer2 = ClipTokenizer.fromFolder(options.tokenizer, { padToken: '!' });
  return {
    tokenizer,
    textEncoder,
    tokenizer2,
    textEncoder2,
    unet,
    vae,
    schedulerConfig: configs.scheduler as DiffusersSchedulerConfig,
    forceZerosForEmptyPrompt: configs.forceZeros,
    name: basename(path),
  };
}

/** OpenCLIP multiplies x @ text_projection [width, proj]; a Linear's weight is its transpose, so the value is read and transposed into memory. */
function bindTransposed(file: SafetensorsFile, tensorName: string, p: Parameters<typeof bindLocated>[0][number]): void {
  const [proj, width] = p.shape;
  if (!file.has(tensorName)) throw new Error(`cannot load text encoder 2 from ${file.path}: missing tensor ${tensorName} [${width}, ${proj}]`);
  const entry = file.entry(tensorName);
  if (entry.shape.join() !== [width, proj].join()) throw new Error(`tensor "${tensorName}" in ${file.path}: expected shape [${width}, ${proj}] (OpenCLIP's text_projection), found [${entry.shape.join(', ')}]`);
  p.bindFile(file, entry, true);
  const stored = p.value();
  const out = new Float32Array(stored.length);
  for (let i = 0; i < width!; i++) for (let j = 0; j < proj!; j++) out[j * width! + i] = stored[i * proj! + j];
  p.setValue(out);
}

const SGM_RESNET: Record<string, string> = { norm1: 'in_layers.0', conv1: 'in_layers.2', norm2: 'out_layers.0', conv2: 'out_layers.3', time_emb_proj: 'emb_layers.1', conv_shortcut: 'skip_connection' };
const SGM_FIXED: Record<string, string> = {
  conv_in: 'input_blocks.0.0',
  'time_embedding.linear_1': 'time_embed.0',
  'time_embedding.linear_2': 'time_embed.2',
  'add_embedding.linear_1': 'label_emb.0.0',
  'add_embedding.linear_2': 'label_emb.0.2',
  conv_norm_out: 'out.0',
  conv_out: 'out.2',
};

/**
 * A UNet module path in diffusers' naming → the original (LDM / SGM) one, as kohya's SDXL LoRAs
 * name their layers (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`): the inverse of
 * single-file.ts' unetName for module paths; undefined for paths it does not know.
 */
export function sgmUnetModule(module: string, config: Pick<UNetConfig, 'layers_per_block' | 'up_block_types'>): string | undefined {
  if (SGM_FIXED[module]) return SGM_FIXED[module];
  const perLevel = config.layers_per_block[0]! + 1;
  const resnet = (local: string) => SGM_RESNET[local];
  let m: RegExpExecArray | null;
  if ((m = /^down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)$/.exec(module))) return resnet(m[3]!) && `input_blocks.${1 + perLevel * +m[1]! + +m[2]!}.0.${resnet(m[3]!)}`;
  if ((m = /^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(module))) return `input_blocks.${1 + perLevel * +m[1]! + +m[2]!}.1.${m[3]}`;
  if ((m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv$/.exec(module))) return `input_blocks.${perLevel * (+m[1]! + 1)}.0.op`;
  if ((m = /^mid_block\.resnets\.([01])\.(\w+)$/.exec(module))) return resnet(m[2]!) && `middle_block.${m[1] === '0' ? 0 : 2}.${resnet(m[2]!)}`;
  if ((m = /^mid_block\.attentions\.0\.(.+)$/.exec(module))) return `middle_block.1.${m[1]}`;
  if ((m = /^up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)$/.exec(module))) return resnet(m[3]!) && `output_blocks.${perLevel * +m[1]! + +m[2]!}.0.${resnet(m[3]!)}`;
  if ((m = /^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(module))) return `output_blocks.${perLevel * +m[1]! + +m[2]!}.1.${m[3]}`;
  if ((m = /^up_blocks\.(\d+)\.upsamplers\.0\.conv$/.exec(module))) {
    const attends = config.up_block_types[+m[1]!] === 'CrossAttnUpBlock2D';
    return `output_blocks.${perLevel * +m[1]! + perLevel - 1}.${attends ? 2 : 1}.conv`;
  }
  return undefined;
}
