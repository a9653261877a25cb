// Loads a whole Stable Diffusion model — tokenizer, text encoder, UNet, VAE, scheduler config —
// from a diffusers folder or a single-file checkpoint. Weights stay in their files either way.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { bindParameters } from '../engine/module.ts';
import type { DiffusersSchedulerConfig } from '../schedulers/index.ts';
import { ClipTokenizer } from '../tokenizers/clip.ts';
import { ClipTextModel, clipTextConfig, loadClipTextModel } from './clip-text.ts';
import { openSingleFileCheckpoint, singleFileLocator } from './single-file.ts';
import { UNet2DConditionModel, loadUNet, parseUNetConfig } from './unet.ts';
import { AutoencoderKL, loadVae, parseVaeConfig } from './vae.ts';

export interface StableDiffusionComponents {
  tokenizer: ClipTokenizer;
  textEncoder: ClipTextModel;
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  schedulerConfig: DiffusersSchedulerConfig;
  /** Shown in PNG metadata: the folder or file name. */
  name: string;
  /** What the user should know about how the model was read (guessed configs, unused tensors). */
  warnings: string[];
}

export interface LoadModelOptions {
  /** Original-style YAML config for single-file checkpoints of non-standard shapes. */
  config?: string;
  /** Tokenizer folder (vocab.json, merges.txt) for single-file checkpoints, which carry none. */
  tokenizer?: string;
}

export function loadStableDiffusion(path: string, options: LoadModelOptions = {}): StableDiffusionComponents {
  if (!existsSync(path)) throw new Error(`model not found: ${path}`);
  return statSync(path).isFile() ? loadSingleFile(path, options) : loadFolder(path);
}

function loadFolder(path: string): StableDiffusionComponents {
  if (!existsSync(join(path, 'model_index.json'))) throw new Error(`${path} is not a diffusers model folder: it has no model_index.json`);
  const schedulerPath = join(path, 'scheduler', 'scheduler_config.json');
  return {
    tokenizer: ClipTokenizer.fromFolder(join(path, 'tokenizer')),
    textEncoder: loadClipTextModel(join(path, 'text_encoder')),
    unet: loadUNet(join(path, 'unet')),
    vae: loadVae(join(path, 'vae')),
    schedulerConfig: existsSync(schedulerPath) ? (JSON.parse(readFileSync(schedulerPath, 'utf8')) as DiffusersSchedulerConfig) : {},
    name: basename(path),
    warnings: [],
  };
}

function loadSingleFile(path: string, options: LoadModelOptions): StableDiffusionComponents {
  const yaml = options.config === undefined ? undefined : readFileSync(options.config, 'utf8');
  const checkpoint = openSingleFileCheckpoint(path, { originalConfigYaml: yaml });
  const { file, config, mapping } = checkpoint;
  const unet = new UNet2DConditionModel(parseUNetConfig(config.unet));
  const vae = new AutoencoderKL(parseVaeConfig(config.vae));
  const textEncoder = new ClipTextModel(clipTextConfig(config.text_encoder));
  bindParameters(unet.parameters(), singleFileLocator(file, mapping.unet), `UNet from ${path}`);
  bindParameters(vae.parameters(), singleFileLocator(file, mapping.vae), `VAE from ${path}`);
  bindParameters(textEncoder.parameters(), singleFileLocator(file, mapping.textEncoder), `text encoder from ${path}`);
  const tokenizerDir = options.tokenizer ?? join(dirname(path), 'tokenizer');
  if (!existsSync(join(tokenizerDir, 'vocab.json'))) {
    throw new Error(`single-file checkpoints carry no tokenizer and none was found at ${tokenizerDir}: pass --tokenizer DIR (a folder with vocab.json and merges.txt)`);
  }
  const tokenizer = ClipTokenizer.fromFolder(tokenizerDir);
  return { tokenizer, textEncoder, unet, vae, schedulerConfig: config.scheduler as DiffusersSchedulerConfig, name: basename(path), warnings: checkpoint.warnings };
}
