// Loaders of a diffusers / transformers component folder: config.json read by the one config
// reader, weights found by the weight-file finder (plain, fp16 variant, sharded), the config's
// layer counts checked against the tensor names before anything is built, then every parameter
// bound by the one binder. The model files themselves hold architecture only.

import { AutoencoderTiny } from '../autoencoder-tiny.ts';
import { ClipModel } from '../clip.ts';
import { ClipTextModel } from '../clip-text.ts';
import { ClipVisionModel } from '../clip-vision.ts';
import { UNet2DConditionModel } from '../unet.ts';
import { AutoencoderKL } from '../vae.ts';
import { parseAutoencoderTinyConfig } from './autoencoder-tiny-config.ts';
import { bindWeights } from './bind.ts';
import { parseClipConfig, parseClipTextConfig, parseClipVisionConfig } from './clip-config.ts';
import { configPath, inFile, parseConfigFile, readConfigJson } from './config-file.ts';
import { type CountExpectation, checkLayerCounts } from './layer-counts.ts';
import { type UNetConfig, parseUNetConfig } from './unet-config.ts';
import { parseVaeConfig } from './vae-config.ts';
import { type Weights, openWeights } from './weights.ts';

export interface LoadOptions {
  /** A weights variant to prefer, e.g. "fp16" (diffusion_pytorch_model.fp16.safetensors). */
  variant?: string;
}

/** A diffusers `unet/` folder (UNet2DConditionModel). Weights stay in the file. */
export function loadUNet(dir: string, options: LoadOptions = {}): UNet2DConditionModel {
  const path = configPath(dir);
  const config = parseConfigFile(path, 'UNet config', parseUNetConfig);
  const weights = openWeights(dir, 'diffusion_pytorch_model', options.variant);
  checkLayerCounts(weights, path, unetLayerCounts(config));
  const unet = inFile(path, () => new UNet2DConditionModel(config));
  bindWeights(unet.parameters(), weights, { what: 'UNet' });
  return unet;
}

/** The repeat counts a UNet config implies, as tensor-name prefixes (diffusers' names). */
function unetLayerCounts(c: UNetConfig): CountExpectation[] {
  const levels = c.block_out_channels.length;
  const out: CountExpectation[] = [
    { field: 'block_out_channels', prefix: 'down_blocks', expected: levels },
    { field: 'block_out_channels', prefix: 'up_blocks', expected: levels },
  ];
  for (let i = 0; i < levels; i++) {
    const up = levels - 1 - i;
    out.push({ field: `layers_per_block[${i}]`, prefix: `down_blocks.${i}.resnets`, expected: c.layers_per_block[i] });
    out.push({ field: `layers_per_block[${up}] + 1`, prefix: `up_blocks.${i}.resnets`, expected: c.layers_per_block[up] + 1 });
    if (c.down_block_types[i].startsWith('CrossAttn')) {
      out.push({ field: `transformer_layers_per_block[${i}]`, prefix: `down_blocks.${i}.attentions.0.transformer_blocks`, expected: c.transformer_layers_per_block[i] });
    }
  }
  return out;
}

// Checkpoints saved before diffusers' Attention refactor name the VAE's mid-block projections differently.
const LEGACY_VAE_ATTENTION: [RegExp, string][] = [
  [/\.attentions\.0\.to_q\./, '.attentions.0.query.'],
  [/\.attentions\.0\.to_k\./, '.attentions.0.key.'],
  [/\.attentions\.0\.to_v\./, '.attentions.0.value.'],
  [/\.attentions\.0\.to_out\.0\./, '.attentions.0.proj_attn.'],
];

/** A diffusers `vae/` folder (AutoencoderKL); either attention naming, 1×1-conv-shaped projections accepted. */
export function loadVae(dir: string, options: LoadOptions = {}): AutoencoderKL {
  const path = configPath(dir);
  const config = parseConfigFile(path, 'VAE config', parseVaeConfig);
  const weights = openWeights(dir, 'diffusion_pytorch_model', options.variant);
  const levels = config.block_out_channels.length;
  checkLayerCounts(weights, path, [
    { field: 'block_out_channels', prefix: 'encoder.down_blocks', expected: levels },
    { field: 'block_out_channels', prefix: 'decoder.up_blocks', expected: levels },
    { field: 'layers_per_block', prefix: 'encoder.down_blocks.0.resnets', expected: config.layers_per_block },
    { field: 'layers_per_block + 1', prefix: 'decoder.up_blocks.0.resnets', expected: config.layers_per_block + 1 },
  ]);
  const vae = inFile(path, () => new AutoencoderKL(config));
  bindVaeWeights(vae, weights);
  return vae;
}

/** Binds an AutoencoderKL to diffusers-named weights (a folder's, or a lone VAE file's: `--vae`). */
export function bindVaeWeights(vae: AutoencoderKL, weights: Weights): void {
  bindWeights(vae.parameters(), weights, {
    what: 'VAE',
    aliases: (name) => LEGACY_VAE_ATTENTION.filter(([re]) => re.test(name)).map(([re, legacy]) => name.replace(re, legacy)),
    sameBytes: (p) => /\.attentions\.\d+\./.test(p.name) && p.shape.length === 2,
  });
}

/** A diffusers AutoencoderTiny folder (TAESD, TAESDXL). */
export function loadAutoencoderTiny(dir: string, options: LoadOptions = {}): AutoencoderTiny {
  const path = configPath(dir);
  const config = parseConfigFile(path, 'AutoencoderTiny config', parseAutoencoderTinyConfig);
  const weights = openWeights(dir, 'diffusion_pytorch_model', options.variant);
  const model = inFile(path, () => new AutoencoderTiny(config));
  bindWeights(model.parameters(), weights, { what: 'AutoencoderTiny' });
  return model;
}

/** transformers ≤ 4.30 saves the position_ids buffer; the models derive positions themselves. */
const positionIds = (name: string) => name.endsWith('embeddings.position_ids');

/** A transformers `text_encoder/` folder (CLIPTextModel, CLIPTextModelWithProjection). */
export function loadClipTextModel(dir: string, options: LoadOptions = {}): ClipTextModel {
  const path = configPath(dir);
  const config = parseConfigFile(path, 'config.json', parseClipTextConfig);
  const weights = openWeights(dir, 'model', options.variant);
  checkLayerCounts(weights, path, [{ field: 'num_hidden_layers', prefix: 'text_model.encoder.layers', expected: config.num_hidden_layers }]);
  const model = inFile(path, () => new ClipTextModel(config));
  bindWeights(model.parameters(), weights, { what: 'CLIP text encoder', ignore: positionIds });
  return model;
}

/** A transformers CLIPVisionModel(WithProjection) folder. */
export function loadClipVisionModel(dir: string, options: LoadOptions = {}): ClipVisionModel {
  const model = new ClipVisionModel(parseConfigFile(configPath(dir), 'config.json', parseClipVisionConfig));
  bindWeights(model.parameters(), openWeights(dir, 'model', options.variant), { what: 'CLIP vision encoder', ignore: positionIds });
  return model;
}

/** A transformers CLIPModel folder (text and vision towers). */
export function loadClipModel(dir: string, options: LoadOptions = {}): ClipModel {
  const json = readConfigJson(dir);
  const path = configPath(dir);
  // A text encoder alone (an SD model's text_encoder/) would otherwise fail binding with a list of
  // every vision tensor it lacks.
  if (json.vision_config === undefined) {
    const kind = Array.isArray(json.architectures) ? ` (${json.architectures.join(', ')})` : '';
    throw new Error(`${dir} is not a CLIP model with a vision tower${kind}: ${path} has no "vision_config"; CLIP training needs a CLIPModel folder (text and vision towers), or start from --config`);
  }
  const model = new ClipModel(inFile(path, () => parseClipConfig(json)));
  bindWeights(model.parameters(), openWeights(dir, 'model', options.variant), { what: 'CLIP model', ignore: positionIds });
  return model;
}
