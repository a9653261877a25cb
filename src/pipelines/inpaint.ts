// Inpainting: repaint where a mask is white and keep the rest, as diffusers'
// StableDiffusionInpaintPipeline does, for both kinds of checkpoint:
//  - an inpainting UNet (9 input channels: SD-1.5-inpainting, SDXL-inpainting) sees, beside the
//    latents, the mask at latent size and the latents of the picture with the masked area set to
//    0 (mid grey) — a VAE posterior sample;
//  - an ordinary UNet (4 channels) denoises everything, and after every step the unmasked area is
//    reset to the picture's own latents noised to the next timestep.
// The decoded picture is then laid over the original through the (blurred) mask, as AUTOMATIC1111
// does, so what the mask keeps stays pixel for pixel. Outpainting grows the canvas first and masks
// the new border.

import type { RandomSource } from '../engine/random.ts';
import { type RgbImage, createImage, imageToTensor } from '../io/image.ts';
import type { Shape4 } from '../models/vae-runner.ts';
import { type Scheduler, img2imgTimesteps } from '../schedulers/index.ts';
import { type Mask, binarize, blurMask, fillMaskedArea, mixByMask, resizeNearest } from './masks.ts';
import type { StableDiffusion } from './stable-diffusion.ts';

/**
 * What the masked area starts from at strength < 1, AUTOMATIC1111's `inpainting_fill` 0–3: the
 * colours around it, the picture itself, random latents, zero latents.
 */
export type InpaintFill = 'fill' | 'original' | 'latent-noise' | 'latent-nothing';
export const INPAINT_FILLS = ['fill', 'original', 'latent-noise', 'latent-nothing'] as const satisfies readonly InpaintFill[];
/** The CLI's and server's mask blur in pixels, AUTOMATIC1111's default (the library's is 0, diffusers'). */
export const MASK_BLUR = 4;

export interface InpaintOptions {
  /** Same size as the picture; 1 (white) = repaint, 0 = keep. Binarised at ½ after blurring. */
  mask: Mask;
  /** Gaussian σ in pixels for the mask (AUTOMATIC1111's mask blur): softens the seam of the overlay. Default 0. */
  blur?: number;
  /** Default 'original': the picture itself, noised to the first timestep. */
  fill?: InpaintFill;
  /** ε of the masked picture's VAE posterior sample [B, C, h, w] (drawn when absent): diffusers draws it from its generator. */
  maskedImageNoise?: Float32Array;
  /** ε of the picture's VAE posterior sample [B, C, h, w], for a 4-channel UNet or strength < 1 (drawn when absent). */
  imageNoise?: Float32Array;
  /**
   * AUTOMATIC1111's "Only masked" (inpaint-only-masked.ts): the picture, of any size, is inpainted
   * only around the mask, that part drawn at the run's width × height with `padding` pixels of
   * context; the result is the whole picture. Without it the picture is the run's size.
   */
  onlyMasked?: { padding: number };
}

/** How an inpainting run differs from txt2img: where it starts, what the UNet sees, what each step keeps. */
export interface InpaintRun {
  latents: Float32Array;
  timesteps: number[];
  /** [B, 1 + C, h, w]: the mask and masked-picture latents appended to the UNet's input (9-channel UNets). */
  conditioning?: Float32Array;
  /** The 4-channel UNet's reset of the unmasked area after step i. */
  afterStep?: (stepIndex: number, latents: Float32Array) => Float32Array;
  /** The decoded pictures laid over the original through the mask. */
  overlay: (images: RgbImage[]) => RgbImage[];
  /** The latent-size mask [h·w] (1 = repaint). */
  latentMask: Float32Array;
}

export interface PrepareInpaintOptions {
  image: RgbImage;
  inpaint: InpaintOptions;
  /** [B, C, h, w] of the latents. */
  shape: Shape4;
  scheduler: Scheduler;
  strength: number;
  /** The initial noise ε [B, C, h, w]. */
  noise: Float32Array;
  /** Start from noise·σ_init at any strength, as diffusers does when given latents (the picture is not noised in). */
  startFromNoise: boolean;
  rng: RandomSource;
}

/** An inpainting UNet takes latents, mask and masked-picture latents: in = 2·out + 1 channels. */
export function isInpaintingUNet(sd: StableDiffusion): boolean {
  const { in_channels, out_channels } = sd.components.unet.config;
  return in_channels === 2 * out_channels + 1;
}

/** For pipelines that do not inpaint: an inpainting UNet would fail inside ONNX Runtime on 4 channels. */
export function refuseInpaintingUNet(sd: StableDiffusion, what: string): void {
  if (isInpaintingUNet(sd)) throw new Error(`${what}: ${sd.name} has an inpainting UNet (${sd.components.unet.config.in_channels} input channels); it needs a picture and a mask to repaint`);
}

export async function prepareInpaint(sd: StableDiffusion, o: PrepareInpaintOptions): Promise<InpaintRun> {
  const [batch, channels, h, w] = o.shape;
  const { image, inpaint } = o;
  const f = sd.vaeScaleFactor;
  const size = batch * channels * h * w;
  if (image.width !== w * f || image.height !== h * f) throw new Error(`inpaint: the picture is ${image.width}×${image.height}, the output ${w * f}×${h * f}`);
  if (inpaint.mask.width !== image.width || inpaint.mask.height !== image.height) {
    throw new Error(`inpaint: the mask is ${inpaint.mask.width}×${inpaint.mask.height}, the picture ${image.width}×${image.height}`);
  }
  const fill = inpaint.fill ?? 'original';
  if (!INPAINT_FILLS.includes(fill)) throw new Error(`inpaint: fill must be one of ${INPAINT_FILLS.join(', ')}, got ${fill}`);
  for (const [name, noise] of [['maskedImageNoise', inpaint.maskedImageNoise], ['imageNoise', inpaint.imageNoise]] as const) {
    if (noise && noise.length !== size) throw new Error(`inpaint: ${name} has ${noise.length} values; [${o.shape.join(', ')}] needs ${size}`);
  }
  const nineChannels = isInpaintingUNet(sd);
  if (!nineChannels && sd.components.unet.config.in_channels !== channels) {
    throw new Error(`inpaint: a UNet with ${sd.components.unet.config.in_channels} input channels is neither an ordinary (${channels}) nor an inpainting (${2 * channels + 1}) one`);
  }

  const soft = blurMask(inpaint.mask, inpaint.blur ?? 0);
  const hard = binarize(soft);
  const latentMask = resizeNearest(hard.data, image.height, image.width, h, w);
  const pixels = imageToTensor(new Array(batch).fill(image), '-1..1');
  const pixelShape: Shape4 = [batch, 3, image.height, image.width];
  const fixed = (given: Float32Array | undefined): RandomSource => (given ? { randn: () => given, rand: () => given, randint: () => 0 } : o.rng);

  // As diffusers: the timesteps from the strength, setting the scheduler's begin index (at 1 too).
  const timesteps = img2imgTimesteps(o.scheduler, o.strength).timesteps;
  const fromPicture = !o.startFromNoise && o.strength < 1;
  let imageLatents: Float32Array | undefined;
  if (fromPicture || !nineChannels) {
    const start = fill === 'fill' ? imageToTensor(new Array(batch).fill(fillMaskedArea(image, hard)), '-1..1') : pixels;
    imageLatents = (await sd.vaeRunner.imageToLatents(start, pixelShape, { rng: fixed(inpaint.imageNoise) })).data;
  }

  let latents: Float32Array;
  if (fromPicture) {
    let start = imageLatents!;
    if (fill === 'latent-noise' || fill === 'latent-nothing') {
      const filler = fill === 'latent-noise' ? o.rng.randn(size) : new Float32Array(size);
      start = mixByMask(start, filler, latentMask);
    }
    latents = o.scheduler.addNoise(start, o.noise, timesteps[0]);
  } else {
    latents = o.noise.map((v) => v * o.scheduler.initNoiseSigma);
  }

  let conditioning: Float32Array | undefined;
  let afterStep: InpaintRun['afterStep'];
  if (nineChannels) {
    // The masked picture keeps what the mask keeps; the area to repaint becomes 0 (mid grey).
    const plane = image.width * image.height;
    const masked = pixels.map((v, i) => (hard.data[i % plane] < 0.5 ? v : 0));
    const maskedLatents = (await sd.vaeRunner.imageToLatents(masked, pixelShape, { rng: fixed(inpaint.maskedImageNoise) })).data;
    conditioning = appendChannels([{ data: latentMask, channels: 1 }, { data: maskedLatents, channels }], batch, h * w);
  } else {
    const known = imageLatents!;
    afterStep = (i, current) => {
      const next = timesteps[i + 1];
      const reference = next === undefined ? known : o.scheduler.addNoise(known, o.noise, next);
      return mixByMask(reference, current, latentMask);
    };
  }
  const overlay = (images: RgbImage[]) => images.map((generated) => overlayImage(image, generated, inpaint.blur ? soft : hard));
  return { latents, timesteps, conditioning, afterStep, overlay, latentMask };
}

/**
 * NCHW tensors joined on the channel axis, item by item: each part has `channels` planes of
 * `plane` values per item, for all `batch` items or for a shorter batch that repeats (one set for
 * all; B items for both guidance halves).
 */
export function appendChannels(parts: { data: Float32Array; channels: number }[], batch: number, plane: number): Float32Array {
  const perItem = parts.reduce((a, p) => a + p.channels, 0) * plane;
  const out = new Float32Array(batch * perItem);
  for (const { data, channels } of parts) {
    const n = channels * plane;
    const items = data.length / n;
    if (!Number.isInteger(items) || batch % items) throw new Error(`appendChannels: ${data.length} values are not items of ${channels} × ${plane} that repeat into ${batch}`);
  }
  for (let b = 0; b < batch; b++) {
    let at = b * perItem;
    for (const { data, channels } of parts) {
      const n = channels * plane;
      const from = (b % (data.length / n)) * n;
      out.set(data.subarray(from, from + n), at);
      at += n;
    }
  }
  return out;
}

/** `generated` over `original` where the mask is 1, the original where it is 0, mixed between. */
export function overlayImage(original: RgbImage, generated: RgbImage, mask: Mask): RgbImage {
  const out = createImage(original.width, original.height);
  out.data.set(mixByMask(original.data, generated.data, mask.data));
  return out;
}

export const OUTPAINT_SIDES = ['left', 'right', 'top', 'bottom'] as const;

/** Pixels to add on each side of the picture. */
export type OutpaintAmounts = Partial<Record<(typeof OUTPAINT_SIDES)[number], number>>;

/**
 * The canvas grown by `amounts`: the picture at its place, the new border filled by repeating its
 * edge pixels (a start that matches its colours), and a mask that is white on the border (and
 * wherever `mask` already was).
 */
export function outpaintCanvas(image: RgbImage, amounts: OutpaintAmounts, mask?: Mask): { image: RgbImage; mask: Mask } {
  const { left = 0, right = 0, top = 0, bottom = 0 } = amounts;
  for (const [side, n] of Object.entries({ left, right, top, bottom })) {
    if (!Number.isInteger(n) || n < 0) throw new Error(`outpaint: ${side} must be a whole number of pixels ≥ 0, got ${n}`);
  }
  if (mask && (mask.width !== image.width || mask.height !== image.height)) throw new Error(`outpaint: the mask is ${mask.width}×${mask.height}, the picture ${image.width}×${image.height}`);
  const [W, H] = [image.width + left + right, image.height + top + bottom];
  const canvas = createImage(W, H);
  const grown = new Float32Array(W * H);
  const plane = image.width * image.height;
  for (let y = 0; y < H; y++) {
    const sy = Math.min(image.height - 1, Math.max(0, y - top));
    for (let x = 0; x < W; x++) {
      const sx = Math.min(image.width - 1, Math.max(0, x - left));
      for (let c = 0; c < 3; c++) canvas.data[c * W * H + y * W + x] = image.data[c * plane + sy * image.width + sx];
      const inside = y - top === sy && x - left === sx;
      grown[y * W + x] = inside ? (mask ? mask.data[sy * image.width + sx] : 0) : 1;
    }
  }
  return { image: canvas, mask: { width: W, height: H, data: grown } };
}

/** Parses `left=128,right=64,top=…,bottom=…` (any subset, each once). */
export function parseOutpaint(spec: string): OutpaintAmounts {
  const out: Record<string, number> = {};
  for (const part of spec.split(',')) {
    const m = /^\s*(left|right|top|bottom)\s*=\s*(\d+)\s*$/.exec(part);
    if (!m) throw new Error(`--outpaint: "${part}" is not SIDE=PIXELS with SIDE one of left, right, top, bottom (e.g. left=128,right=128)`);
    if (m[1] in out) throw new Error(`--outpaint: ${m[1]} is given twice`);
    out[m[1]] = Number(m[2]);
  }
  return out;
}
