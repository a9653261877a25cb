// Running the VAE: the encoder and decoder compiled once each with symbolic batch, height and width
// (one ONNX Runtime session serves every size), plus the two conventions around them:
//
//   raw:       encodeImage → the latent distribution; decodeRaw → the decoder's output, unclamped.
//   pipeline:  imageToLatents → scaling_factor · z, the latents a diffusion model works in;
//              decodeLatents → z / scaling_factor decoded and mapped to [0, 1] (x/2 + 0.5, clamped).

import { type CompiledGraph, type Parameter, type RandomSource, type RunOptions, Tensor, compile, firstNonFinite, sym } from '../engine/index.ts';
import { type AutoencoderKL, type VaeConfig, vaeDownscale } from './vae.ts';

export type Shape4 = readonly [number, number, number, number];

/** Per-channel latent statistics over [B, C, h, w], as Float32Arrays in NCHW order. */
export interface EncodedLatents {
  mean: Float32Array;
  std: Float32Array;
  logvar: Float32Array;
  /** [B, latent, H/f, W/f] */
  shape: Shape4;
}

export interface DecodedImages {
  data: Float32Array;
  /** [B, 3, H, W] */
  shape: Shape4;
}

export interface DecodeLatentsOptions {
  /** Divide by scaling_factor (and undo shift / latents_mean) first, as the SD pipeline does. Default true. */
  scale?: boolean;
}

export interface ImageToLatentsOptions {
  /** Sample z = mean + std·ε with ε from this source; without it the mean is used. */
  rng?: RandomSource;
}

export function checkShape(what: string, data: Float32Array, shape: Shape4, channels: number, multiple: number): void {
  const [b, c, h, w] = shape;
  if (shape.length !== 4 || shape.some((d) => !Number.isInteger(d) || d <= 0)) throw new Error(`${what}: shape must be 4 positive integers, got [${shape.join(', ')}]`);
  if (c !== channels) throw new Error(`${what}: expected ${channels} channels, got shape [${shape.join(', ')}]`);
  if (h % multiple || w % multiple) throw new Error(`${what}: height and width must be multiples of ${multiple}, got ${h}x${w}`);
  if (data.length !== b * c * h * w) throw new Error(`${what}: ${data.length} values do not fill shape [${shape.join(', ')}]`);
}

/** Applies `f(value, channel)` to every element of NCHW data. */
function perChannel(data: Float32Array, shape: Shape4, f: (v: number, c: number) => number): Float32Array {
  const [, channels, h, w] = shape;
  const plane = h * w;
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = f(data[i], Math.floor(i / plane) % channels);
  return out;
}

/** Encoder-space z → the latents a diffusion model works in. */
export function scaleLatents(z: Float32Array, shape: Shape4, config: VaeConfig): Float32Array {
  const { scaling_factor: s, shift_factor: shift = 0, latents_mean: mean, latents_std: std } = config;
  if (mean && std) return perChannel(z, shape, (v, c) => ((v - mean[c]) * s) / std[c]);
  return perChannel(z, shape, (v) => (v - shift) * s);
}

/** The inverse of `scaleLatents`: diffusion latents → what the decoder takes. */
export function unscaleLatents(latents: Float32Array, shape: Shape4, config: VaeConfig): Float32Array {
  const { scaling_factor: s, shift_factor: shift = 0, latents_mean: mean, latents_std: std } = config;
  if (mean && std) return perChannel(latents, shape, (v, c) => (v * std[c]) / s + mean[c]);
  return perChannel(latents, shape, (v) => v / s + shift);
}

/** What a runner needs of an autoencoder model (AutoencoderKL, AutoencoderTiny). */
interface AutoencoderModel {
  readonly config: { in_channels: number; latent_channels: number };
  decode(latents: Tensor): Tensor;
}

/**
 * The sessions both VAE runners hold: an encoder and a decoder over symbolic batch and size, each
 * compiled on first use, freed together.
 */
export abstract class AutoencoderSessions<M extends AutoencoderModel> {
  private encoder: Promise<CompiledGraph> | undefined;
  private decoder: Promise<CompiledGraph> | undefined;

  /** `trainable`: parameters the graphs take as inputs fed as they stand (a VAE being trained). */
  constructor(
    readonly vae: M,
    private readonly options: RunOptions = {},
    private readonly trainable: Iterable<Parameter> = [],
  ) {}

  get config(): M['config'] {
    return this.vae.config;
  }

  /** What the encoder graph returns for input `images`. */
  protected abstract encoderOutputs(images: Tensor): Record<string, Tensor>;

  /** Frees the encoder's and decoder's sessions (a later use compiles them again). */
  async release(): Promise<void> {
    const graphs = [this.encoder, this.decoder];
    this.encoder = this.decoder = undefined;
    for (const graph of graphs) if (graph) await (await graph).release();
  }

  /** The encoder session (compiled on first use): input `images`, outputs `encoderOutputs`'s. */
  compiledEncoder(): Promise<CompiledGraph> {
    this.encoder ??= (() => {
      const images = Tensor.input('images', [sym('B'), this.config.in_channels, sym('H'), sym('W')]);
      return compile({ inputs: [images], outputs: this.encoderOutputs(images), trainable: this.trainable }, this.options);
    })();
    return this.encoder;
  }

  /** The decoder session (compiled on first use): input `latents` (unscaled), output `image` (raw). */
  compiledDecoder(): Promise<CompiledGraph> {
    this.decoder ??= (() => {
      const latents = Tensor.input('latents', [sym('B'), this.config.latent_channels, sym('H'), sym('W')]);
      return compile({ inputs: [latents], outputs: { image: this.vae.decode(latents) }, trainable: this.trainable }, this.options);
    })();
    return this.decoder;
  }
}

export class VaeRunner extends AutoencoderSessions<AutoencoderKL> {
  /** Outputs `mean`, `std`, `logvar`. */
  protected encoderOutputs(images: Tensor): Record<string, Tensor> {
    const { mean, std, logvar } = this.vae.encode(images);
    return { mean, std, logvar };
  }

  /** images [B, 3, H, W] in [-1, 1] (H, W multiples of the downscale) → the raw latent distribution. */
  async encodeImage(images: Float32Array, shape: Shape4): Promise<EncodedLatents> {
    const f = vaeDownscale(this.config);
    checkShape('encodeImage', images, shape, this.config.in_channels, f);
    const out = await (await this.compiledEncoder()).run({ images: { data: images, shape } });
    const latentShape: Shape4 = [shape[0], this.config.latent_channels, shape[2] / f, shape[3] / f];
    return { mean: out.mean.data as Float32Array, std: out.std.data as Float32Array, logvar: out.logvar.data as Float32Array, shape: latentShape };
  }

  /** Pipeline-style: images in [-1, 1] → scaling_factor · z (z the mean, or a sample with `rng`). */
  async imageToLatents(images: Float32Array, shape: Shape4, options: ImageToLatentsOptions = {}): Promise<{ data: Float32Array; shape: Shape4 }> {
    const { mean, std, shape: latentShape } = await this.encodeImage(images, shape);
    let z = mean;
    if (options.rng) {
      const noise = options.rng.randn(mean.length);
      z = mean.map((m, i) => m + std[i] * noise[i]);
    }
    return { data: scaleLatents(z, latentShape, this.config), shape: latentShape };
  }

  /** Raw: unscaled latents [B, 4, h, w] → the decoder's output [B, 3, h·f, w·f], unclamped. */
  async decodeRaw(latents: Float32Array, shape: Shape4): Promise<DecodedImages> {
    checkShape('decodeRaw', latents, shape, this.config.latent_channels, 1);
    const out = await (await this.compiledDecoder()).run({ latents: { data: latents, shape } });
    return { data: out.image.data as Float32Array, shape: out.image.shape as unknown as Shape4 };
  }

  /** Pipeline-style: diffusion latents → images [B, 3, H, W] in [0, 1]. */
  // Every pipeline's pictures pass through here, so this is where a non-finite result (from NaN
  // weights, latents or an overflowing config) becomes an error instead of a black image.
  async decodeLatents(latents: Float32Array, shape: Shape4, options: DecodeLatentsOptions = {}): Promise<DecodedImages> {
    const z = options.scale === false ? latents : unscaleLatents(latents, shape, this.config);
    refuseNonFinite(latents, 'the final latents');
    refuseNonFinite(z, 'the latents divided by the VAE scaling_factor');
    const raw = await this.decodeRaw(z, shape);
    refuseNonFinite(raw.data, "the VAE decoder's output");
    return { data: toUnitRange(raw.data), shape: raw.shape };
  }
}

/** A decoder's [-1, 1] pictures → [0, 1], clamped. */
export function toUnitRange(data: Float32Array): Float32Array {
  return data.map((x) => Math.min(1, Math.max(0, x / 2 + 0.5)));
}

export function refuseNonFinite(data: Float32Array, what: string): void {
  const i = firstNonFinite(data);
  if (i >= 0) {
    throw new Error(`${what} hold ${data[i]} (at index ${i}): the model, a LoRA, an embedding or the initial latents gave non-finite numbers, so no picture is written`);
  }
}
