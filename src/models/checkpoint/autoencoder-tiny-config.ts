// diffusers' config.json for AutoencoderTiny (TAESD, TAESDXL): its field names, diffusers'
// defaults for absent fields, every size bounded.

import { CONFIG_BOUNDS as B } from './bounds.ts';
import type { ConfigJson } from './config-file.ts';
import { ConfigReader } from './config-reader.ts';

export interface AutoencoderTinyConfig {
  in_channels: number;
  out_channels: number;
  latent_channels: number;
  /** One width per level; diffusers chains the levels without a change of width, so all are equal. */
  encoder_block_out_channels: number[];
  decoder_block_out_channels: number[];
  /** AutoencoderTinyBlocks per level (TAESD: 1, 3, 3, 3 and 3, 3, 3, 1). */
  num_encoder_blocks: number[];
  num_decoder_blocks: number[];
  /** forward()'s uint8 latents: byte = round(255 · clamp(z / (2·magnitude) + shift, 0, 1)). */
  latent_magnitude: number;
  latent_shift: number;
  /** Pipelines multiply encoder latents by this and divide by it before decoding (1 for TAESD). */
  scaling_factor: number;
}

/** Whether a diffusers model folder holds an AutoencoderTiny (its config's `_class_name`). */
export function isAutoencoderTinyConfig(json: ConfigJson): boolean {
  return json._class_name === 'AutoencoderTiny';
}

/** Reads a diffusers AutoencoderTiny config object. */
export function parseAutoencoderTinyConfig(json: ConfigJson): AutoencoderTinyConfig {
  const c = new ConfigReader(json);
  c.only('act_fn', 'relu');
  c.only('upsample_fn', 'nearest');
  c.only('upsampling_scaling_factor', 2);
  const shared = c.ints('block_out_channels', [64, 64, 64, 64], { max: B.channels, maxLength: B.levels });
  const widths = { max: B.channels, maxLength: B.levels };
  const counts = { min: 0, max: B.layers, maxLength: B.levels };
  const encoder_block_out_channels = c.ints('encoder_block_out_channels', shared, widths);
  const decoder_block_out_channels = c.ints('decoder_block_out_channels', shared, widths);
  const num_encoder_blocks = c.ints('num_encoder_blocks', [1, 3, 3, 3], counts);
  const num_decoder_blocks = c.ints('num_decoder_blocks', [3, 3, 3, 1], counts);
  for (const [field, w, n] of [
    ['encoder_block_out_channels', encoder_block_out_channels, num_encoder_blocks],
    ['decoder_block_out_channels', decoder_block_out_channels, num_decoder_blocks],
  ] as const) {
    if (w.length !== n.length) throw new Error(`"${field}" needs one entry per level (${n.length}), got ${w.length}`);
    if (w.some((x) => x !== w[0])) throw new Error(`"${field}" must be one width for every level (diffusers' tiny encoder and decoder never change width), got ${JSON.stringify(w)}`);
  }
  return {
    in_channels: c.int('in_channels', 3, B.channels),
    out_channels: c.int('out_channels', 3, B.channels),
    latent_channels: c.int('latent_channels', 4, B.channels),
    encoder_block_out_channels,
    decoder_block_out_channels,
    num_encoder_blocks,
    num_decoder_blocks,
    latent_magnitude: c.number('latent_magnitude', 3, 0, 1e3),
    latent_shift: c.number('latent_shift', 0.5, -1e3, 1e3, true),
    scaling_factor: c.number('scaling_factor', 1, 1e-3, 1e3, true),
  };
}
