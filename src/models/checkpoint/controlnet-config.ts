// diffusers' config.json for ControlNetModel: the UNet's down-half fields (read as a UNet config)
// plus the conditioning embedding's, by diffusers' names.

import { CONFIG_BOUNDS as B } from './bounds.ts';
import type { ConfigJson } from './config-file.ts';
import { ConfigReader } from './config-reader.ts';
import { type UNetConfig, parseUNetConfig } from './unet-config.ts';

export interface ControlNetConfig {
  /** The down half's architecture, read as a UNet config (diffusers' field names). */
  unet: UNetConfig;
  conditioning_channels: number;
  /** Widths of the conditioning embedding's levels; each level after the first halves the size. */
  conditioning_embedding_out_channels: number[];
  /** 'bgr' models were trained on control images with the channels reversed. */
  controlnet_conditioning_channel_order: 'rgb' | 'bgr';
}

/** Fields only a ControlNet config has; the rest is read as a UNet config. */
const CONTROLNET_FIELDS = ['conditioning_channels', 'conditioning_embedding_out_channels', 'controlnet_conditioning_channel_order', 'global_pool_conditions'];

/** Reads a diffusers ControlNetModel config object. */
export function parseControlNetConfig(json: ConfigJson): ControlNetConfig {
  const r = new ConfigReader(json);
  r.only('global_pool_conditions', false);
  r.only('time_cond_proj_dim', null);
  if (r.has('addition_embed_type')) throw new Error(`"addition_embed_type" ${JSON.stringify(json.addition_embed_type)} (an SDXL ControlNet) is not supported`);
  const unetJson = Object.fromEntries(Object.entries(json).filter(([k]) => !CONTROLNET_FIELDS.includes(k)));
  // A ControlNet has no up path; mirror the down block types so the UNet config reads as complete.
  const down = r.raw('down_block_types') ?? ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'];
  const up = Array.isArray(down) ? [...down].reverse().map((t) => (t === 'CrossAttnDownBlock2D' ? 'CrossAttnUpBlock2D' : 'UpBlock2D')) : undefined;
  return {
    unet: parseUNetConfig({ ...unetJson, up_block_types: up }),
    conditioning_channels: r.int('conditioning_channels', 3, B.channels),
    conditioning_embedding_out_channels: r.ints('conditioning_embedding_out_channels', [16, 32, 96, 256], { max: B.channels, maxLength: B.levels }),
    controlnet_conditioning_channel_order: r.oneOf('controlnet_conditioning_channel_order', ['rgb', 'bgr'], 'rgb'),
  };
}
