// A full-size Stable Diffusion 1.5 diffusers folder with random weights, for benchmarks: the real
// SD-1.5 configs (UNet 860M, VAE 84M, CLIP ViT-L/14 text 123M parameters) built with the project's
// own model classes and initialisers, so timings and memory match a real checkpoint's without a
// download. Cached outside git (default `.cache/bench/sd15-random[-fp16]/`, or $NURI_BENCH_DIR);
// a marker file written last says the folder is complete.
//
//   npx tsx bench/random-checkpoint.ts [--fp16]     prints the folder, writing it if needed

import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Generator, type Module, type Parameter, type WritableTensor, float32ToFloat16, writeSafetensors } from '../src/engine/index.ts';
import { ClipTextModel } from '../src/models/clip-text.ts';
import { parseClipTextConfig } from '../src/models/checkpoint/clip-config.ts';
import { UNet2DConditionModel } from '../src/models/unet.ts';
import { parseUNetConfig } from '../src/models/checkpoint/unet-config.ts';
import { AutoencoderKL } from '../src/models/vae.ts';
import { parseVaeConfig } from '../src/models/checkpoint/vae-config.ts';

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

export function randomCheckpointDir(options: RandomCheckpointOptions = {}): string {
  const root = options.root ?? process.env.NURI_BENCH_DIR ?? join(repoRoot, '.cache', 'bench');
  return join(root, options.fp16 ? 'sd15-random-fp16' : 'sd15-random');
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

/** Returns the checkpoint folder, writing it first unless a complete one is already there. */
export function ensureRandomCheckpoint(options: RandomCheckpointOptions = {}): string {
  const dir = randomCheckpointDir(options);
  if (existsSync(join(dir, MARKER))) return dir;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const fp16 = options.fp16 ?? false;
  log(`writing a random-weight SD-1.5 checkpoint (${fp16 ? 'fp16' : 'fp32'}) to ${dir}`);
  // A folder without the marker is a half-written one: start over.
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });

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
  writeJson(join(dir, MARKER), { weights: fp16 ? 'float16' : 'float32', written: new Date().toISOString() });
  return dir;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(ensureRandomCheckpoint({ fp16: process.argv.includes('--fp16') }));
}
