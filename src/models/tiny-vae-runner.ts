// Running an AutoencoderTiny (TAESD): encoder and decoder compiled once each with symbolic batch
// and size, with the same pipeline conventions as VaeRunner (latents × scaling_factor, pictures in
// [0, 1]) so a pipeline can use either. TAESD's latents are the UNet's own (scaling_factor 1) and
// have no distribution: encoding is deterministic.

import type { Tensor } from '../engine/index.ts';
import { type AutoencoderTiny, bytesToLatents, latentsToBytes, tinyDownscale } from './autoencoder-tiny.ts';
import { AutoencoderSessions, type DecodedImages, type Shape4, checkShape, refuseNonFinite, toUnitRange } from './vae-runner.ts';

export class TinyVaeRunner extends AutoencoderSessions<AutoencoderTiny> {
  /** Output `latents` (unscaled). */
  protected encoderOutputs(images: Tensor): Record<string, Tensor> {
    return { latents: this.vae.encode(images) };
  }

  /** Raw: images [B, 3, H, W] in [-1, 1] → unscaled latents [B, 4, H/f, W/f]. */
  async encodeRaw(images: Float32Array, shape: Shape4): Promise<{ data: Float32Array; shape: Shape4 }> {
    checkShape('encode', images, shape, this.config.in_channels, tinyDownscale(this.config));
    const out = await (await this.compiledEncoder()).run({ images: { data: images, shape } });
    return { data: out.latents.data as Float32Array, shape: out.latents.shape as unknown as Shape4 };
  }

  /** Raw: unscaled latents → the decoder's output [B, 3, h·f, w·f], unclamped. */
  async decodeRaw(latents: Float32Array, shape: Shape4): Promise<DecodedImages> {
    checkShape('decode', latents, shape, this.config.latent_channels, 1);
    const out = await (await this.compiledDecoder()).run({ latents: { data: latents, shape } });
    return { data: out.image.data as Float32Array, shape: out.image.shape as unknown as Shape4 };
  }

  /** Pipeline-style: images in [-1, 1] → scaling_factor · latents (no sampling: TAESD has no distribution). */
  async imageToLatents(images: Float32Array, shape: Shape4): Promise<{ data: Float32Array; shape: Shape4 }> {
    const raw = await this.encodeRaw(images, shape);
    const s = this.config.scaling_factor;
    return { data: s === 1 ? raw.data : raw.data.map((v) => v * s), shape: raw.shape };
  }

  /** Pipeline-style: diffusion latents → images [B, 3, H, W] in [0, 1]. */
  async decodeLatents(latents: Float32Array, shape: Shape4): Promise<DecodedImages> {
    const s = this.config.scaling_factor;
    refuseNonFinite(latents, 'the final latents');
    const raw = await this.decodeRaw(s === 1 ? latents : latents.map((v) => v / s), shape);
    refuseNonFinite(raw.data, "the tiny VAE decoder's output");
    return { data: toUnitRange(raw.data), shape: raw.shape };
  }

  /** diffusers' `AutoencoderTiny.forward`: encode, store the latents as bytes, decode those (raw output). */
  async roundTrip(images: Float32Array, shape: Shape4): Promise<{ bytes: Uint8Array; decoded: DecodedImages }> {
    const latents = await this.encodeRaw(images, shape);
    const bytes = latentsToBytes(latents.data, this.config);
    return { bytes, decoded: await this.decodeRaw(bytesToLatents(bytes, this.config), latents.shape) };
  }
}
