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

import { Conv2d, Module, type Tensor, add, joinName, mul, relu, sub, tanh, upsampleNearest2x } from '../engine/index.ts';
import type { AutoencoderTinyConfig } from './checkpoint/autoencoder-tiny-config.ts';

export type { AutoencoderTinyConfig } from './checkpoint/autoencoder-tiny-config.ts';

/** How much the encoder shrinks each side: 2 per level after the first (8 for TAESD). */
export function tinyDownscale(config: AutoencoderTinyConfig): number {
  return 2 ** (config.encoder_block_out_channels.length - 1);
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
    cfg.num_encoder_blocks.forEach((blocks, i) => {
      const width = cfg.encoder_block_out_channels[i];
      this.layers.push(i === 0 ? new Conv2d(at(), cfg.in_channels, width, 3, { padding: 1 }) : new Conv2d(at(), width, width, 3, { padding: 1, stride: 2, bias: false }));
      for (let b = 0; b < blocks; b++) this.layers.push(new AutoencoderTinyBlock(at(), width, width));
    });
    this.layers.push(new Conv2d(at(), cfg.encoder_block_out_channels.at(-1)!, cfg.latent_channels, 3, { padding: 1 }));
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
    const widths = cfg.decoder_block_out_channels;
    this.layers.push(new Conv2d(at(), cfg.latent_channels, widths[0], 3, { padding: 1 }), 'relu');
    cfg.num_decoder_blocks.forEach((blocks, i) => {
      const last = i === widths.length - 1;
      for (let b = 0; b < blocks; b++) this.layers.push(new AutoencoderTinyBlock(at(), widths[i], widths[i]));
      if (!last) this.layers.push('upsample');
      this.layers.push(new Conv2d(at(), widths[i], last ? cfg.out_channels : widths[i], 3, { padding: 1, bias: last }));
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
  const { latent_magnitude: m, latent_shift: shift } = config;
  return Uint8Array.from(latents, (z) => roundHalfEven(255 * Math.min(1, Math.max(0, z / (2 * m) + shift))));
}

/** The inverse of `latentsToBytes`, up to its rounding: (byte/255 − shift) · 2m. */
export function bytesToLatents(bytes: Uint8Array, config: AutoencoderTinyConfig): Float32Array {
  const { latent_magnitude: m, latent_shift: shift } = config;
  return Float32Array.from(bytes, (b) => (b / 255 - shift) * 2 * m);
}

/** torch.round: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
