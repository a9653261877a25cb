// Loads a whole Stable Diffusion model — tokenizer, text encoder, UNet, VAE, scheduler config —
// from a diffusers folder or a single-file checkpoint. Weights stay in their files either way.

import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ConfigReader } from '../schedulers/config.ts';
import type { DiffusersSchedulerConfig } from '../schedulers/index.ts';
import { ClipTokenizer } from '../tokenizers/clip.ts';
import { parseConfigFile } from './checkpoint/config-file.ts';
import { type ClipTextModel, loadClipTextModel } from './clip-text.ts';
import { loadSingleFile } from './single-file.ts';
import { type UNet2DConditionModel, loadUNet } from './unet.ts';
import { type AutoencoderKL, loadVae } from './vae.ts';

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
  /** Where to look for a tokenizer when neither --tokenizer nor a tokenizer/ beside the file exists. */
  defaultTokenizer?: string;
  /** Overrides the scheduler's prediction type of a single-file checkpoint (SD 2.x 768-v). */
  predictionType?: 'epsilon' | 'v_prediction';
}

export function loadStableDiffusion(path: string, options: LoadModelOptions = {}): StableDiffusionComponents {
  if (!existsSync(path)) throw new Error(`model not found: ${path}`);
  return statSync(path).isFile() ? loadFromSingleFile(path, options) : loadFolder(path);
}

function loadFolder(path: string): StableDiffusionComponents {
  if (!existsSync(join(path, 'model_index.json'))) throw new Error(`${path} is not a diffusers model folder: it has no model_index.json`);
  const schedulerPath = join(path, 'scheduler', 'scheduler_config.json');
  // Small files first, so a broken config is reported before the vocabulary is parsed.
  const schedulerConfig = existsSync(schedulerPath) ? readSchedulerConfig(schedulerPath) : {};
  const unet = loadUNet(join(path, 'unet'));
  const vae = loadVae(join(path, 'vae'));
  const textEncoder = loadClipTextModel(join(path, 'text_encoder'));
  const tokenizer = ClipTokenizer.fromFolder(join(path, 'tokenizer'));
  checkTokenizerFits(tokenizer, textEncoder, join(path, 'tokenizer'), join(path, 'text_encoder'));
  return { tokenizer, textEncoder, unet, vae, schedulerConfig, name: basename(path), warnings: [] };
}

function loadFromSingleFile(path: string, options: LoadModelOptions): StableDiffusionComponents {
  const tokenizer = options.tokenizer ?? [join(dirname(path), 'tokenizer'), options.defaultTokenizer].find((dir) => dir && existsSync(join(dir, 'vocab.json')));
  const warnings: string[] = [];
  const components = loadSingleFile(path, { ...options, tokenizer, onWarning: (w) => warnings.push(w) });
  checkTokenizerFits(components.tokenizer, components.textEncoder, tokenizer!, `the text encoder of ${path}`);
  return { ...components, warnings };
}

/**
 * Every id the tokenizer can produce must be a row of the text encoder's embedding table; checked
 * here, where both files are known, rather than failing inside ONNX Runtime's Gather at the first prompt.
 */
function checkTokenizerFits(tokenizer: ClipTokenizer, textEncoder: ClipTextModel, tokenizerDir: string, textEncoderName: string): void {
  const rows = textEncoder.embeddings.tokenCount;
  if (tokenizer.size > rows) {
    throw new Error(`tokenizer ${tokenizerDir} has ids up to ${tokenizer.size - 1}, but ${textEncoderName} has ${rows} token embedding rows (a tokenizer of another model?)`);
  }
}

/** A scheduler_config.json, checked now (field types and bounds) so a bad one names its file before any work. */
export function readSchedulerConfig(path: string): DiffusersSchedulerConfig {
  return parseConfigFile(path, 'scheduler config', (json) => {
    new ConfigReader(json, 'scheduler').common('leading');
    return json;
  });
}
