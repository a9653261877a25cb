// Loading a ControlNet: a diffusers folder (config.json + diffusion_pytorch_model.safetensors) or
// one .safetensors file in the original layout (lllyasviel's `control_model.*` keys, or the same
// keys without the prefix). A single file carries no config: its architecture is the base model's
// UNet down half, with the widths the file's own tensors show.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../engine/safetensors.ts';
import { bindLocated, bindWeights } from './checkpoint/bind.ts';
import { inFile, parseConfigFile } from './checkpoint/config-file.ts';
import { Weights, openWeights } from './checkpoint/weights.ts';
import { type ControlNetConfig, ControlNetModel } from './controlnet.ts';
import { parseControlNetConfig } from './checkpoint/controlnet-config.ts';
import { assertNotPickle, unetName } from './single-file.ts';
import type { UNetConfig } from './unet.ts';

export interface LoadControlNetOptions {
  /** The base model's UNet config: the architecture of a single-file ControlNet (required for one). */
  base?: UNetConfig;
}

/** A ControlNet from a diffusers folder or a single .safetensors file, weights bound in place. */
export function loadControlNet(path: string, options: LoadControlNetOptions = {}): ControlNetModel {
  if (!existsSync(path)) throw new Error(`ControlNet not found: ${path}`);
  if (statSync(path).isFile()) return loadSingleFileControlNet(path, options.base);
  const configPath = join(path, 'config.json');
  const config = parseConfigFile(configPath, 'ControlNet config', parseControlNetConfig);
  const weights = openWeights(path, 'diffusion_pytorch_model');
  const net = inFile(configPath, () => new ControlNetModel(config));
  bindWeights(net.parameters(), weights, { what: 'ControlNet' });
  return net;
}

/**
 * Binds every parameter to the key `diffusersName` maps to it; keys it maps to nothing (or to a
 * name already taken) are reported as unexpected, as a ControlNet for another base model has them.
 */
function bindRenamed(net: ControlNetModel, file: SafetensorsFile, diffusersName: (key: string) => string | undefined, ignore?: (key: string) => boolean): void {
  const byName = new Map<string, string>();
  for (const key of file.names()) {
    const name = diffusersName(key);
    if (name !== undefined && !byName.has(name)) byName.set(name, key);
  }
  const locate = (name: string) => (byName.has(name) ? { file, tensorName: byName.get(name)! } : undefined);
  bindLocated(net.parameters(), locate, { what: 'ControlNet', from: file.path, every: Weights.of(file), ignore });
}

const PREFIX = 'control_model.';

function loadSingleFileControlNet(path: string, base: UNetConfig | undefined): ControlNetModel {
  assertNotPickle(path);
  if (!base) throw new Error(`${path}: a single-file ControlNet has no config; its base model's UNet config is needed to read it`);
  const file = SafetensorsFile.open(path);
  const diffusersLayout = file.has('controlnet_cond_embedding.conv_in.weight');
  const strip = (key: string) => (key.startsWith(PREFIX) ? key.slice(PREFIX.length) : key);
  const shape = (key: string) => file.entry(key).shape;
  const find = (original: string, diffusers: string) => file.names().find((k) => (diffusersLayout ? k === diffusers : strip(k) === original));
  // The hint convs, in order: conv_in, (conv, stride-2 conv) per level after the first, conv_out.
  const hintConvs = diffusersLayout ? [] : hintConvIndices(file.names().map(strip));
  const hint = (i: number) => find(`input_hint_block.${hintConvs[i]}.weight`, '');
  const sampleConv = find('input_blocks.0.0.weight', 'conv_in.weight');
  if (!sampleConv || (!diffusersLayout && hintConvs.length < 2)) {
    throw new Error(`${path} is not a ControlNet: no ${diffusersLayout ? 'conv_in' : `${PREFIX}input_blocks.0.0 / input_hint_block`} tensors`);
  }
  let widths: number[];
  let conditioningChannels: number;
  if (diffusersLayout) {
    const blocks = file.names().filter((k) => /^controlnet_cond_embedding\.blocks\.\d+\.weight$/.test(k)).length;
    widths = [shape('controlnet_cond_embedding.conv_in.weight')[0], ...Array.from({ length: blocks / 2 }, (_, i) => shape(`controlnet_cond_embedding.blocks.${2 * i + 1}.weight`)[0])];
    conditioningChannels = shape('controlnet_cond_embedding.conv_in.weight')[1];
  } else {
    const blocks = hintConvs.length - 2;
    if (blocks % 2) throw new Error(`${path}: input_hint_block has ${hintConvs.length} convs; expected conv_in, pairs of convs, conv_out`);
    widths = [shape(hint(0)!)[0], ...Array.from({ length: blocks / 2 }, (_, i) => shape(hint(2 + 2 * i)!)[0])];
    conditioningChannels = shape(hint(0)!)[1];
  }
  const config: ControlNetConfig = {
    // A ControlNet's time embedding takes no guidance condition, whatever its base UNet's does.
    unet: { ...base, in_channels: shape(sampleConv)[1], time_cond_proj_dim: null },
    conditioning_channels: conditioningChannels,
    conditioning_embedding_out_channels: widths,
    controlnet_conditioning_channel_order: 'rgb',
  };
  const net = inFile(path, () => new ControlNetModel(config));
  const layout = { ...base, layers_per_block: base.layers_per_block[0], transformer_layers_per_block: base.transformer_layers_per_block[0] };
  // ControlNet 1.0's full files also carry the whole SD model it was trained with: there, only
  // the control_model.* tensors are the ControlNet.
  const prefixed = !diffusersLayout && file.names().some((k) => k.startsWith(PREFIX));
  const ignore = prefixed ? (key: string) => !key.startsWith(PREFIX) : undefined;
  bindRenamed(net, file, diffusersLayout ? (key) => key : (key) => originalName(strip(key), layout, hintConvs), ignore);
  return net;
}

/** Indices of the convs in the original `input_hint_block` Sequential (SiLUs sit between them). */
function hintConvIndices(keys: string[]): number[] {
  const indices = keys.map((k) => /^input_hint_block\.(\d+)\.weight$/.exec(k)).filter((m) => m !== null).map((m) => Number(m[1]));
  return indices.sort((a, b) => a - b);
}

/** The diffusers name of an original ControlNet key (prefix removed), or undefined. */
function originalName(key: string, layout: Parameters<typeof unetName>[1], hintConvs: number[]): string | undefined {
  let m: RegExpExecArray | null;
  if ((m = /^zero_convs\.(\d+)\.0\.(weight|bias)$/.exec(key))) return `controlnet_down_blocks.${m[1]}.${m[2]}`;
  if ((m = /^middle_block_out\.0\.(weight|bias)$/.exec(key))) return `controlnet_mid_block.${m[1]}`;
  if ((m = /^input_hint_block\.(\d+)\.(weight|bias)$/.exec(key))) {
    const i = hintConvs.indexOf(Number(m[1]));
    if (i < 0) return undefined;
    const local = i === 0 ? 'conv_in' : i === hintConvs.length - 1 ? 'conv_out' : `blocks.${i - 1}`;
    return `controlnet_cond_embedding.${local}.${m[2]}`;
  }
  return unetName(key, layout);
}
