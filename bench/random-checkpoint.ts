// Full-size models with random weights, for benchmarks: a Stable Diffusion 1.5 diffusers folder
// (UNet 860M, VAE 84M, CLIP ViT-L/14 text 123M parameters), SDXL base's UNet alone (2.57B, 10.3 GB
// in fp32, written in shards so that writing it never holds more than one block) and TAESD (2.4M),
// with their published configs, built with the project's own model classes and initialisers, so
// timings and memory match a real checkpoint's without a download. Cached outside git (default
// `.cache/bench/`, or $NURI_BENCH_DIR); a marker file written last says a folder is complete.
//
//   npx tsx bench/random-checkpoint.ts [--fp16] [--sdxl] [--taesd]     prints the folders, writing them if needed

import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Generator, Module, type Parameter, type WritableTensor, float32ToFloat16, writeSafetensors } from '../src/engine/index.ts';
import { AutoencoderTiny } from '../src/models/autoencoder-tiny.ts';
import { parseAutoencoderTinyConfig } from '../src/models/checkpoint/autoencoder-tiny-config.ts';
import { ClipTextModel } from '../src/models/clip-text.ts';
import { parseClipTextConfig } from '../src/models/checkpoint/clip-config.ts';
import { UNet2DConditionModel } from '../src/models/unet.ts';
import { parseUNetConfig } from '../src/models/checkpoint/unet-config.ts';
import { AutoencoderKL } from '../src/models/vae.ts';
import { parseVaeConfig } from '../src/models/checkpoint/vae-config.ts';
import { SDXL_BASE_CONFIG } from '../src/models/single-file-sdxl.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MARKER = '.complete';

// The configs as published with runwayml/stable-diffusion-v1-5.
export const SD15_UNET_CONFIG = {
  _class_name: 'UNet2DConditionModel',
  _diffusers_version: '0.6.0',
  act_fn: 'silu',
  attention_head_dim: 8,
  block_out_channels: [320, 640, 1280, 1280],
  center_input_sample: false,
  cross_attention_dim: 768,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  downsample_padding: 1,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  norm_eps: 1e-5,
  norm_num_groups: 32,
  out_channels: 4,
  sample_size: 64,
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
};

export const SD15_VAE_CONFIG = {
  _class_name: 'AutoencoderKL',
  _diffusers_version: '0.6.0',
  act_fn: 'silu',
  block_out_channels: [128, 256, 512, 512],
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  in_channels: 3,
  latent_channels: 4,
  layers_per_block: 2,
  norm_num_groups: 32,
  out_channels: 3,
  sample_size: 512,
  scaling_factor: 0.18215,
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
};

export const SD15_TEXT_ENCODER_CONFIG = {
  _name_or_path: 'openai/clip-vit-large-patch14',
  architectures: ['CLIPTextModel'],
  attention_dropout: 0.0,
  bos_token_id: 0,
  dropout: 0.0,
  eos_token_id: 2,
  hidden_act: 'quick_gelu',
  hidden_size: 768,
  initializer_factor: 1.0,
  initializer_range: 0.02,
  intermediate_size: 3072,
  layer_norm_eps: 1e-5,
  max_position_embeddings: 77,
  model_type: 'clip_text_model',
  num_attention_heads: 12,
  num_hidden_layers: 12,
  pad_token_id: 1,
  projection_dim: 768,
  torch_dtype: 'float32',
  vocab_size: 49408,
};

export const SD15_SCHEDULER_CONFIG = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'leading',
  trained_betas: null,
};

/** stabilityai/stable-diffusion-xl-base-1.0's unet/config.json (the fields that differ from diffusers' defaults). */
export const SDXL_UNET_CONFIG = { _class_name: 'UNet2DConditionModel', in_channels: 4, out_channels: 4, ...SDXL_BASE_CONFIG.unet };

/** TAESD as published (madebyollin/taesd's config.json). */
export const TAESD_CONFIG = {
  _class_name: 'AutoencoderTiny',
  act_fn: 'relu',
  block_out_channels: [64, 64, 64, 64],
  decoder_block_out_channels: [64, 64, 64, 64],
  encoder_block_out_channels: [64, 64, 64, 64],
  in_channels: 3,
  latent_channels: 4,
  latent_magnitude: 3,
  latent_shift: 0.5,
  num_decoder_blocks: [3, 3, 3, 1],
  num_encoder_blocks: [1, 3, 3, 3],
  out_channels: 3,
  scaling_factor: 1.0,
  upsampling_scaling_factor: 2,
};

const MODEL_INDEX = {
  _class_name: 'StableDiffusionPipeline',
  _diffusers_version: '0.6.0',
  feature_extractor: [null, null],
  requires_safety_checker: false,
  safety_checker: [null, null],
  scheduler: ['diffusers', 'PNDMScheduler'],
  text_encoder: ['transformers', 'CLIPTextModel'],
  tokenizer: ['transformers', 'CLIPTokenizer'],
  unet: ['diffusers', 'UNet2DConditionModel'],
  vae: ['diffusers', 'AutoencoderKL'],
};

export interface RandomCheckpointOptions {
  /** Store weights as float16 (diffusers' `variant="fp16"` file names) in a folder of their own. */
  fp16?: boolean;
  /** Parent folder of the checkpoints; default $NURI_BENCH_DIR or `.cache/bench` in the repository. */
  root?: string;
  /** Progress lines go here (default: stderr). */
  log?: (line: string) => void;
}

/** Where benchmarks keep their checkpoints, graph cache and outputs: never beside a model given to them (it may be read-only, as ../shared is). */
export function benchRoot(options: RandomCheckpointOptions = {}): string {
  return options.root ?? process.env.NURI_BENCH_DIR ?? join(repoRoot, '.cache', 'bench');
}

export function randomCheckpointDir(options: RandomCheckpointOptions = {}): string {
  return join(benchRoot(options), options.fp16 ? 'sd15-random-fp16' : 'sd15-random');
}

/** The fixture pipeline's tokenizer folder: the real CLIP vocabulary and merges. */
function fixtureTokenizerDir(): string {
  const fixtures = process.env.NURI_FIXTURES ?? join(repoRoot, '..', 'shared', 'fixtures');
  const dir = join(fixtures, 'tiny-sd', 'tokenizer');
  if (!existsSync(join(dir, 'vocab.json'))) throw new Error(`CLIP tokenizer not found at ${dir} (set NURI_FIXTURES)`);
  return dir;
}

function writeJson(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

/**
 * The module's parameters as safetensors tensors. For fp16 each float32 value is dropped as soon as
 * it is converted, so the peak stays near one copy of the component.
 */
function tensorsOf(params: readonly Parameter[], fp16: boolean): Map<string, WritableTensor> {
  const tensors = new Map<string, WritableTensor>();
  for (const p of params) {
    const value = p.value();
    if (!fp16) {
      tensors.set(p.name, { dtype: 'F32', shape: [...p.shape], data: value });
      continue;
    }
    tensors.set(p.name, { dtype: 'F16', shape: [...p.shape], data: float32ToFloat16(value) });
    p.source = undefined;
  }
  return tensors;
}

/** Initialises one component, writes its config and weights, and lets it go before the next. */
function writeComponent(dir: string, config: object, weightsFile: string, build: () => Module, seed: number, fp16: boolean, log: (line: string) => void): void {
  const t0 = performance.now();
  mkdirSync(dir, { recursive: true });
  writeJson(join(dir, 'config.json'), config);
  const model = build();
  model.init(new Generator(seed));
  const params = model.parameters();
  const count = params.reduce((n, p) => n + p.size, 0);
  writeSafetensors(join(dir, weightsFile), tensorsOf(params, fp16), { format: 'pt' });
  log(`  ${dir}: ${(count / 1e6).toFixed(1)}M parameters in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/**
 * Returns `dir`, first writing it with `write` unless a complete one is already there. A folder
 * without the marker is a half-written one: it is started over.
 */
function ensureFolder(dir: string, what: string, options: RandomCheckpointOptions, write: (log: (line: string) => void) => void): string {
  if (existsSync(join(dir, MARKER))) return dir;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  log(`writing ${what} to ${dir}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  write(log);
  writeJson(join(dir, MARKER), { written: new Date().toISOString() });
  return dir;
}

/** Returns the SD-1.5 checkpoint folder, writing it first unless a complete one is already there. */
export function ensureRandomCheckpoint(options: RandomCheckpointOptions = {}): string {
  const fp16 = options.fp16 ?? false;
  return ensureFolder(randomCheckpointDir(options), `a random-weight SD-1.5 checkpoint (${fp16 ? 'fp16' : 'fp32'})`, options, (log) => {
    const dir = randomCheckpointDir(options);
    const suffix = fp16 ? '.fp16.safetensors' : '.safetensors';
    const textConfig = { ...SD15_TEXT_ENCODER_CONFIG, torch_dtype: fp16 ? 'float16' : 'float32' };
    writeComponent(join(dir, 'text_encoder'), textConfig, `model${suffix}`, () => new ClipTextModel(parseClipTextConfig(textConfig)), 1, fp16, log);
    writeComponent(join(dir, 'vae'), SD15_VAE_CONFIG, `diffusion_pytorch_model${suffix}`, () => new AutoencoderKL(parseVaeConfig(SD15_VAE_CONFIG)), 2, fp16, log);
    writeComponent(join(dir, 'unet'), SD15_UNET_CONFIG, `diffusion_pytorch_model${suffix}`, () => new UNet2DConditionModel(parseUNetConfig(SD15_UNET_CONFIG)), 3, fp16, log);

    mkdirSync(join(dir, 'scheduler'), { recursive: true });
    writeJson(join(dir, 'scheduler', 'scheduler_config.json'), SD15_SCHEDULER_CONFIG);
    const tokenizerFrom = fixtureTokenizerDir();
    mkdirSync(join(dir, 'tokenizer'), { recursive: true });
    for (const name of readdirSync(tokenizerFrom)) copyFileSync(join(tokenizerFrom, name), join(dir, 'tokenizer', name));
    writeJson(join(dir, 'model_index.json'), MODEL_INDEX);
  });
}

/**
 * Writes a module's weights one top-level child at a time (conv_in, each down block, …), each child
 * initialised, written to its own shard and let go before the next, with the shards listed in
 * `<stem>.safetensors.index.json` as diffusers saves large models.
 */
export function writeShardedComponent(dir: string, config: object, stem: string, model: Module, seed: number, log: (line: string) => void): void {
  const t0 = performance.now();
  mkdirSync(dir, { recursive: true });
  writeJson(join(dir, 'config.json'), config);
  const children = Object.values(model).flatMap((v: unknown) => (v instanceof Module ? [v] : Array.isArray(v) ? v.filter((m) => m instanceof Module) : []));
  const rng = new Generator(seed);
  const weightMap: Record<string, string> = {};
  let bytes = 0;
  children.forEach((child, i) => {
    child.init(rng);
    const params = child.parameters();
    const shard = `${stem}-${String(i + 1).padStart(5, '0')}-of-${String(children.length).padStart(5, '0')}.safetensors`;
    writeSafetensors(join(dir, shard), tensorsOf(params, false), { format: 'pt' });
    for (const p of params) {
      weightMap[p.name] = shard;
      bytes += 4 * p.size;
      p.source = undefined;
    }
  });
  const missing = model.parameters().filter((p) => !(p.name in weightMap));
  if (missing.length) throw new Error(`writeShardedComponent: ${missing.length} parameters (${missing[0].name}, …) are not in a child module`);
  writeJson(join(dir, `${stem}.safetensors.index.json`), { metadata: { total_size: bytes }, weight_map: weightMap });
  log(`  ${dir}: ${(bytes / 4e6).toFixed(1)}M parameters in ${children.length} shards in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** SDXL base's UNet alone (`<root>/sdxl-random/unet`), in shards; `config` replaces its config (tests). */
export function ensureRandomSdxlUNet(options: RandomCheckpointOptions & { config?: object } = {}): string {
  const config = options.config ?? SDXL_UNET_CONFIG;
  const dir = join(benchRoot(options), options.config ? 'sdxl-random-custom' : 'sdxl-random', 'unet');
  return ensureFolder(dir, 'a random-weight SDXL UNet (fp32)', options, (log) => {
    writeShardedComponent(dir, config, 'diffusion_pytorch_model', new UNet2DConditionModel(parseUNetConfig({ ...config })), 4, log);
  });
}

/** TAESD (`<root>/taesd-random`), an AutoencoderTiny folder `--vae` takes. */
export function ensureRandomTaesd(options: RandomCheckpointOptions = {}): string {
  const dir = join(benchRoot(options), 'taesd-random');
  return ensureFolder(dir, 'a random-weight TAESD', options, (log) => {
    writeComponent(dir, TAESD_CONFIG, 'diffusion_pytorch_model.safetensors', () => new AutoencoderTiny(parseAutoencoderTinyConfig(TAESD_CONFIG)), 5, false, log);
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(ensureRandomCheckpoint({ fp16: process.argv.includes('--fp16') }));
  if (process.argv.includes('--sdxl')) console.log(ensureRandomSdxlUNet());
  if (process.argv.includes('--taesd')) console.log(ensureRandomTaesd());
}
