// diffusers' `vae/config.json` for AutoencoderKL: its field names, diffusers' defaults for absent
// fields, every size bounded, and a clear error for block types and activations Nuri lacks.

import { CONFIG_BOUNDS as B } from './bounds.ts';
import type { ConfigJson } from './config-file.ts';
import { ConfigReader } from './config-reader.ts';

export interface VaeConfig {
  in_channels: number;
  out_channels: number;
  /** One entry per resolution level, the widest last; the encoder halves the size between levels. */
  block_out_channels: number[];
  layers_per_block: number;
  latent_channels: number;
  norm_num_groups: number;
  /** Image size the model was trained at (pixels). */
  sample_size: number;
  /** Pipelines multiply encoder latents by this and divide by it before decoding. */
  scaling_factor: number;
  /** SD3-style latent shift, absent for SD 1.x/2.x: latents = (z − shift) · scaling. */
  shift_factor?: number;
  /** Per-channel latent statistics some checkpoints carry (SDXL-style pipelines use them). */
  latents_mean?: number[];
  latents_std?: number[];
  use_quant_conv: boolean;
  use_post_quant_conv: boolean;
  mid_block_add_attention: boolean;
}

/** Reads a diffusers AutoencoderKL config object. */
export function parseVaeConfig(json: ConfigJson): VaeConfig {
  const c = new ConfigReader(json);
  const block_out_channels = c.ints('block_out_channels', [64], { max: B.channels, maxLength: B.levels });
  const levels = block_out_channels.length;
  const down = c.types('down_block_types', ['DownEncoderBlock2D'], ['DownEncoderBlock2D']);
  const up = c.types('up_block_types', ['UpDecoderBlock2D'], ['UpDecoderBlock2D']);
  if (down.length !== levels || up.length !== levels) throw new Error(`"down_block_types" and "up_block_types" need one entry per block_out_channels (${levels})`);
  c.only('act_fn', 'silu');
  const norm_num_groups = c.int('norm_num_groups', 32, B.channels);
  const odd = block_out_channels.find((n) => n % norm_num_groups);
  if (odd !== undefined) throw new Error(`${odd} channels do not split into "norm_num_groups" ${norm_num_groups}`);
  const latent_channels = c.int('latent_channels', 4, B.channels);
  const latents_mean = c.optionalNumbers('latents_mean', latent_channels);
  const latents_std = c.optionalNumbers('latents_std', latent_channels);
  if (!latents_mean !== !latents_std) throw new Error('"latents_mean" and "latents_std" come together');
  if (latents_std?.some((x) => !(x >= 1e-6))) c.fail('latents_std', 'a list of numbers ≥ 1e-6');
  const shift_factor = c.has('shift_factor') ? c.number('shift_factor', 0, -1e3, 1e3, true) : undefined;
  return {
    in_channels: c.int('in_channels', 3, B.channels),
    out_channels: c.int('out_channels', 3, B.channels),
    block_out_channels,
    layers_per_block: c.int('layers_per_block', 1, B.layers),
    latent_channels,
    norm_num_groups,
    sample_size: c.int('sample_size', 32, B.sampleSize),
    // Released VAEs use 0.13 to 1.53; outside [1e-3, 1e3] latents over- or underflow float32.
    scaling_factor: c.number('scaling_factor', 0.18215, 1e-3, 1e3, true),
    ...(shift_factor !== undefined ? { shift_factor } : {}),
    ...(latents_mean && latents_std ? { latents_mean, latents_std } : {}),
    use_quant_conv: c.bool('use_quant_conv', true),
    use_post_quant_conv: c.bool('use_post_quant_conv', true),
    mid_block_add_attention: c.bool('mid_block_add_attention', true),
  };
}
