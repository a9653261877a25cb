// AutoencoderTiny (TAESD, TAESDXL): a distilled stand-in for the SD VAE, with diffusers' config
// fields and parameter names. No norms, no attention, no distribution: plain convs and ReLUs, so it
// decodes in a small fraction of the full VAE's time.
//
//   encode: image [B,3,H,W] in [-1,1] → (x+1)/2 → per level: conv (stride 2 after the first, no
//           bias), blocks → conv → latents [B,4,H/8,W/8], already in the UNet's latent space
//   decode: latents → tanh(x/3)·3 (a soft clamp) → conv, ReLU → per level: blocks, nearest 2×,
//           conv (no bias but the last) → x·2 − 1, not clamped
//
// diffusers keeps both halves as one nn.Sequential, so parameters are `encoder.layers.N.…` with N
// counting the parameterless ReLU and Upsample entries too; `layers` below mirrors that list.

import { join } from 'node:path';
import { Conv2d, Module, type Tensor, add, joinName, mul, relu, sub, tanh, upsampleNearest2x } from '../engine/index.ts';
import { CONFIG_BOUNDS as B, boundedInt, boundedNumber } from './checkpoint/bounds.ts';
import { type ConfigJson, inFile, parseConfigFile } from './checkpoint/config-file.ts';
import { bindWeights } from './checkpoint/bind.ts';
import { openWeights } from './checkpoint/weights.ts';

export interface AutoencoderTinyConfig {
  inChannels: number;
  outChannels: number;
  latentChannels: number;
  /** One width per level; diffusers chains the levels without a change of width, so all are equal. */
  encoderBlockOutChannels: number[];
  decoderBlockOutChannels: number[];
  /** AutoencoderTinyBlocks per level (TAESD: 1, 3, 3, 3 and 3, 3, 3, 1). */
  numEncoderBlocks: number[];
  numDecoderBlocks: number[];
  /** forward()'s uint8 latents: byte = round(255 · clamp(z / (2·magnitude) + shift, 0, 1)). */
  latentMagnitude: number;
  latentShift: number;
  /** Pipelines multiply encoder latents by this and divide by it before decoding (1 for TAESD). */
  scalingFactor: number;
}

/** Reads a diffusers AutoencoderTiny `config.json`, applying diffusers' defaults to absent fields. */
export function parseAutoencoderTinyConfig(c: ConfigJson): AutoencoderTinyConfig {
  const where = (field: string) => `AutoencoderTiny config: "${field}"`;
  const int = (field: string, fallback: number, max = B.channels) => wrap(() => boundedInt(c[field] ?? fallback, field, max));
  const wrap = <T>(f: () => T): T => {
    try {
      return f();
    } catch (e) {
      throw new Error(`AutoencoderTiny config: ${(e as Error).message}`);
    }
  };
  const ints = (field: string, fallback: number[], min: number, max: number): number[] => {
    const v = c[field] ?? fallback;
    if (!Array.isArray(v) || !v.length || v.length > B.levels || v.some((x) => typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max)) {
      throw new Error(`${where(field)} must be a list of 1 to ${B.levels} integers from ${min} to ${max}, got ${JSON.stringify(v)}`);
    }
    return v as number[];
  };
  const only = (field: string, fallback: unknown, allowed: unknown) => {
    const v = c[field] ?? fallback;
    if (v !== allowed) throw new Error(`${where(field)} ${JSON.stringify(v)} is not supported (only ${JSON.stringify(allowed)})`);
  };
  only('act_fn', 'relu', 'relu');
  only('upsample_fn', 'nearest', 'nearest');
  only('upsampling_scaling_factor', 2, 2);

  const shared = c.block_out_channels ?? [64, 64, 64, 64];
  const encoderBlockOutChannels = ints('encoder_block_out_channels', shared as number[], 1, B.channels);
  const decoderBlockOutChannels = ints('decoder_block_out_channels', shared as number[], 1, B.channels);
  const numEncoderBlocks = ints('num_encoder_blocks', [1, 3, 3, 3], 0, B.layers);
  const numDecoderBlocks = ints('num_decoder_blocks', [3, 3, 3, 1], 0, B.layers);
  for (const [field, widths, counts] of [
    ['encoder_block_out_channels', encoderBlockOutChannels, numEncoderBlocks],
    ['decoder_block_out_channels', decoderBlockOutChannels, numDecoderBlocks],
  ] as const) {
    if (widths.length !== counts.length) throw new Error(`${where(field)} needs one entry per level (${counts.length}), got ${widths.length}`);
    if (widths.some((w) => w !== widths[0])) throw new Error(`${where(field)} must be one width for every level (diffusers' tiny encoder and decoder never change width), got ${JSON.stringify(widths)}`);
  }
  return {
    inChannels: int('in_channels', 3),
    outChannels: int('out_channels', 3),
    latentChannels: int('latent_channels', 4),
    encoderBlockOutChannels,
    decoderBlockOutChannels,
    numEncoderBlocks,
    numDecoderBlocks,
    latentMagnitude: wrap(() => boundedNumber(c.latent_magnitude ?? 3, 'latent_magnitude', 0, 1e3)),
    latentShift: wrap(() => boundedNumber(c.latent_shift ?? 0.5, 'latent_shift', -1e3, 1e3, true)),
    scalingFactor: wrap(() => boundedNumber(c.scaling_factor ?? 1, 'scaling_factor', 1e-3, 1e3, true)),
  };
}

/** How much the encoder shrinks each side: 2 per level after the first (8 for TAESD). */
export function tinyDownscale(config: AutoencoderTinyConfig): number {
  return 2 ** (config.encoderBlockOutChannels.length - 1);
}

/** conv3×3–ReLU–conv3×3–ReLU–conv3×3 plus the input (1×1 `skip` when widths differ), then ReLU. */
export class AutoencoderTinyBlock extends Module {
  /** `conv.0`, `conv.2`, `conv.4` (diffusers' Sequential puts the ReLUs at 1 and 3). */
  readonly conv: Conv2d[];
  readonly skip: Conv2d | undefined;

  constructor(name: string, inChannels: number, outChannels: number) {
    super(name);
    this.conv = [0, 2, 4].map((i) => new Conv2d(joinName(name, `conv.${i}`), i ? outChannels : inChannels, outChannels, 3, { padding: 1 }));
    this.skip = inChannels === outChannels ? undefined : new Conv2d(joinName(name, 'skip'), inChannels, outChannels, 1, { bias: false });
  }

  forward(x: Tensor): Tensor {
    const h = this.conv[2].forward(relu(this.conv[1].forward(relu(this.conv[0].forward(x)))));
    return relu(add(h, this.skip ? this.skip.forward(x) : x));
  }
}

/** One entry of diffusers' Sequential: a module, or a parameterless ReLU / nearest 2× upsample. */
type Layer = Conv2d | AutoencoderTinyBlock | 'relu' | 'upsample';

function runLayers(layers: readonly Layer[], x: Tensor): Tensor {
  let h = x;
  for (const layer of layers) {
    if (layer === 'relu') h = relu(h);
    else if (layer === 'upsample') h = upsampleNearest2x(h);
    else h = layer.forward(h);
  }
  return h;
}

export class EncoderTiny extends Module {
  readonly layers: Layer[] = [];

  constructor(name: string, cfg: AutoencoderTinyConfig) {
    super(name);
    const at = () => joinName(name, `layers.${this.layers.length}`);
    cfg.numEncoderBlocks.forEach((blocks, i) => {
      const width = cfg.encoderBlockOutChannels[i];
      this.layers.push(i === 0 ? new Conv2d(at(), cfg.inChannels, width, 3, { padding: 1 }) : new Conv2d(at(), width, width, 3, { padding: 1, stride: 2, bias: false }));
      for (let b = 0; b < blocks; b++) this.layers.push(new AutoencoderTinyBlock(at(), width, width));
    });
    this.layers.push(new Conv2d(at(), cfg.encoderBlockOutChannels.at(-1)!, cfg.latentChannels, 3, { padding: 1 }));
  }

  /** image [B, Cin, H, W] in [-1, 1] → latents [B, latent, H/f, W/f] */
  forward(x: Tensor): Tensor {
    return runLayers(this.layers, mul(add(x, 1), 0.5));
  }
}

export class DecoderTiny extends Module {
  readonly layers: Layer[] = [];

  constructor(name: string, cfg: AutoencoderTinyConfig) {
    super(name);
    const at = () => joinName(name, `layers.${this.layers.length}`);
    const widths = cfg.decoderBlockOutChannels;
    this.layers.push(new Conv2d(at(), cfg.latentChannels, widths[0], 3, { padding: 1 }), 'relu');
    cfg.numDecoderBlocks.forEach((blocks, i) => {
      const last = i === widths.length - 1;
      for (let b = 0; b < blocks; b++) this.layers.push(new AutoencoderTinyBlock(at(), widths[i], widths[i]));
      if (!last) this.layers.push('upsample');
      this.layers.push(new Conv2d(at(), widths[i], last ? cfg.outChannels : widths[i], 3, { padding: 1, bias: last }));
    });
  }

  /** latents [B, latent, h, w] → image [B, Cout, h·f, w·f], roughly in [-1, 1], not clamped */
  forward(z: Tensor): Tensor {
    const clamped = mul(tanh(mul(z, 1 / 3)), 3);
    return sub(mul(runLayers(this.layers, clamped), 2), 1);
  }
}

export class AutoencoderTiny extends Module {
  readonly encoder: EncoderTiny;
  readonly decoder: DecoderTiny;

  constructor(readonly config: AutoencoderTinyConfig, name = '') {
    super(name);
    this.encoder = new EncoderTiny(joinName(name, 'encoder'), config);
    this.decoder = new DecoderTiny(joinName(name, 'decoder'), config);
  }

  /** image [B, 3, H, W] in [-1, 1] → latents (unscaled: no scaling_factor here). */
  encode(image: Tensor): Tensor {
    return this.encoder.forward(image);
  }

  /** latents [B, 4, h, w] (unscaled) → image [B, 3, H, W], not clamped. */
  decode(latents: Tensor): Tensor {
    return this.decoder.forward(latents);
  }
}

/** forward()'s storage form: latents as RGBA-like bytes, round(255 · clamp(z/(2m) + shift, 0, 1)). */
export function latentsToBytes(latents: Float32Array, config: AutoencoderTinyConfig): Uint8Array {
  const { latentMagnitude: m, latentShift: shift } = config;
  return Uint8Array.from(latents, (z) => roundHalfEven(255 * Math.min(1, Math.max(0, z / (2 * m) + shift))));
}

/** The inverse of `latentsToBytes`, up to its rounding: (byte/255 − shift) · 2m. */
export function bytesToLatents(bytes: Uint8Array, config: AutoencoderTinyConfig): Float32Array {
  const { latentMagnitude: m, latentShift: shift } = config;
  return Float32Array.from(bytes, (b) => (b / 255 - shift) * 2 * m);
}

/** torch.round: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Whether a diffusers model folder holds an AutoencoderTiny (its config's `_class_name`). */
export function isAutoencoderTinyConfig(json: ConfigJson): boolean {
  return json._class_name === 'AutoencoderTiny';
}

/** Loads a diffusers AutoencoderTiny folder: config.json and its weights (checkpoint/weights.ts: variants, shards). */
export function loadAutoencoderTiny(dir: string): AutoencoderTiny {
  const configPath = join(dir, 'config.json');
  const config = parseConfigFile(configPath, 'AutoencoderTiny config', parseAutoencoderTinyConfig);
  const weights = openWeights(dir, 'diffusion_pytorch_model');
  const model = inFile(configPath, () => new AutoencoderTiny(config));
  bindWeights(model.parameters(), weights, { what: 'AutoencoderTiny' });
  return model;
}
