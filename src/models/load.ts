// Loads a whole Stable Diffusion model — tokenizer, text encoder, UNet, VAE, scheduler config —
// from a diffusers folder or a single-file checkpoint. Weights stay in their files either way.

import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { SafetensorsFile } from '../engine/safetensors.ts';
import { ConfigReader } from '../schedulers/config.ts';
import type { DiffusersSchedulerConfig } from '../schedulers/index.ts';
import { ClipTokenizer } from '../tokenizers/clip.ts';
import { parseConfigFile } from './checkpoint/config-file.ts';
import { type ClipTextModel } from './clip-text.ts';
import { loadClipTextModel } from './checkpoint/components.ts';
import { assertNotPickle, loadSingleFile } from './single-file.ts';
import { isSdxlSingleFile, loadSdxlSingleFile } from './single-file-sdxl.ts';
import { type UNet2DConditionModel } from './unet.ts';
import { loadUNet } from './checkpoint/components.ts';
import { type AutoencoderKL } from './vae.ts';
import { loadVae } from './checkpoint/components.ts';

export interface StableDiffusionComponents {
  tokenizer: ClipTokenizer;
  textEncoder: ClipTextModel;
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  schedulerConfig: DiffusersSchedulerConfig;
  /** SDXL's second text tower (text_encoder_2 / tokenizer_2): its states follow the first's, its pooled output conditions the UNet. */
  textEncoder2?: ClipTextModel;
  tokenizer2?: ClipTokenizer;
  /** SDXL's force_zeros_for_empty_prompt: without a negative prompt the unconditional embeddings are zeros. */
  forceZerosForEmptyPrompt?: boolean;
  /** Shown in PNG metadata: the folder or file name. */
  name: string;
  /** What the user should know about how the model was read (guessed configs, unused tensors). */
  warnings: string[];
  /** The sampling settings its makers chose (a folder's nuri.json), for runs that name none. */
  defaults?: ModelDefaults;
}

export interface ModelDefaults {
  steps?: number;
  guidance?: number;
  /** Prompt-to-Prompt re-weights also move the states after the word (pipelines/reweight-carry.ts). */
  reweightCarry?: boolean;
}

// nuri.json beside model_index.json: { "defaults": { "guidance": 5, "steps": 20, "reweightCarry": true } }. Diffusers and
// other tools ignore the file; a field Nuri does not read is refused, so a typo is not silently lost.
const MODEL_SETTINGS = z.strictObject({
  defaults: z
    .strictObject({ steps: z.int().min(1).max(1000).optional(), guidance: z.number().min(0).max(100).optional(), reweightCarry: z.boolean().optional() })
    .optional(),
});

/** A model folder's nuri.json (none: undefined), checked field by field. */
export function readModelDefaults(folder: string): ModelDefaults | undefined {
  const path = join(folder, 'nuri.json');
  if (!existsSync(path)) return undefined;
  return parseConfigFile(path, 'nuri.json', (json) => {
    const parsed = MODEL_SETTINGS.safeParse(json);
    if (parsed.success) return parsed.data.defaults;
    const issue = parsed.error.issues[0]!;
    throw new Error(`${issue.path.join('.') || 'the file'}: ${issue.message}`);
  });
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
  const components = { tokenizer, textEncoder, unet, vae, schedulerConfig, name: basename(path), warnings: [], defaults: readModelDefaults(path) };
  return unet.config.addition_embed_type === 'text_time' ? { ...components, ...loadSecondTextTower(path, components) } : components;
}

/** SDXL's text_encoder_2 and tokenizer_2, and model_index.json's force_zeros_for_empty_prompt (diffusers' default: true). */
function loadSecondTextTower(path: string, first: Pick<StableDiffusionComponents, 'textEncoder' | 'unet'>): Pick<StableDiffusionComponents, 'textEncoder2' | 'tokenizer2' | 'forceZerosForEmptyPrompt'> {
  const indexPath = join(path, 'model_index.json');
  const force = parseConfigFile(indexPath, 'model_index.json', (json) => {
    const v = json.force_zeros_for_empty_prompt ?? true;
    if (typeof v !== 'boolean') throw new Error(`force_zeros_for_empty_prompt must be true or false, got ${JSON.stringify(v)}`);
    return v;
  });
  const dir = join(path, 'text_encoder_2');
  if (!existsSync(dir)) throw new Error(`${path}: the UNet takes SDXL's added conditions (addition_embed_type "text_time") but the folder has no text_encoder_2/`);
  const textEncoder2 = loadClipTextModel(dir);
  const tokenizer2 = ClipTokenizer.fromFolder(join(path, 'tokenizer_2'));
  checkTokenizerFits(tokenizer2, textEncoder2, join(path, 'tokenizer_2'), dir);
  checkSdxlWidths(first.unet, first.textEncoder, textEncoder2, path);
  return { textEncoder2, tokenizer2, forceZerosForEmptyPrompt: force };
}

/** The UNet's cross-attention and added-embedding widths must be what the two text encoders give. */
export function checkSdxlWidths(unet: UNet2DConditionModel, textEncoder: ClipTextModel, textEncoder2: ClipTextModel, where: string): void {
  const c = unet.config;
  if (!textEncoder2.textProjection) throw new Error(`${where}: SDXL's second text encoder must be a CLIPTextModelWithProjection (its text_projection gives the pooled embedding)`);
  const states = textEncoder.config.hidden_size + textEncoder2.config.hidden_size;
  const crossDims = new Set(c.cross_attention_dim);
  if (crossDims.size !== 1 || !crossDims.has(states)) {
    throw new Error(`${where}: the text encoders' hidden sizes ${textEncoder.config.hidden_size} + ${textEncoder2.config.hidden_size} = ${states} do not match the UNet's cross_attention_dim ${JSON.stringify(c.cross_attention_dim)}`);
  }
  const added = textEncoder2.config.projection_dim + 6 * c.addition_time_embed_dim!;
  if (added !== c.projection_class_embeddings_input_dim) {
    throw new Error(`${where}: the UNet's projection_class_embeddings_input_dim ${c.projection_class_embeddings_input_dim} should be text_encoder_2's projection_dim ${textEncoder2.config.projection_dim} + 6 × addition_time_embed_dim ${c.addition_time_embed_dim} = ${added}`);
  }
}

function loadFromSingleFile(path: string, options: LoadModelOptions): StableDiffusionComponents {
  const tokenizer = options.tokenizer ?? [join(dirname(path), 'tokenizer'), options.defaultTokenizer].find((dir) => dir && existsSync(join(dir, 'vocab.json')));
  const warnings: string[] = [];
  assertNotPickle(path); // before reading the header as safetensors
  if (isSdxlSingleFile(SafetensorsFile.open(path))) {
    const sdxl = loadSdxlSingleFile(path, { ...options, tokenizer, onWarning: (w) => warnings.push(w) });
    checkTokenizerFits(sdxl.tokenizer, sdxl.textEncoder, tokenizer!, `the text encoder of ${path}`);
    checkSdxlWidths(sdxl.unet, sdxl.textEncoder, sdxl.textEncoder2, path);
    return { ...sdxl, warnings };
  }
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
