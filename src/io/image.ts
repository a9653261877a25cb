// Images inside Nuri: float32, planar CHW, RGB in [0, 1] — the layout the VAE wants (NCHW), one
// image at a time. Conversions to and from model tensors and 8-bit pixels live here; decoding
// files goes through sharp (libvips), which reads PNG, JPEG and WebP.
import { stat } from 'node:fs/promises';
import sharp from 'sharp';

export interface RgbImage {
  width: number;
  height: number;
  channels: 3;
  /** [3, height, width], values in [0, 1]. */
  data: Float32Array;
}

/** Value range of a model tensor: the VAE works in [-1, 1], most other places in [0, 1]. */
export type TensorRange = '-1..1' | '0..1';

export type Rgb = readonly [number, number, number];

/** A new image filled with one colour (components in [0, 1]). */
export function createImage(width: number, height: number, fill: Rgb = [0, 0, 0]): RgbImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`image size must be positive integers, got ${width}x${height}`);
  }
  const plane = width * height;
  const data = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) data.fill(fill[c], c * plane, (c + 1) * plane);
  return { width, height, channels: 3, data };
}

export interface ReadImageOptions {
  width?: number;
  height?: number;
  /**
   * How to reach width x height when both are given: 'cover' (default) scales to cover and
   * crops the centre, 'contain' scales to fit and pads with white, 'fill' stretches.
   */
  fit?: 'cover' | 'contain' | 'fill';
  /** Refuse pictures with more pixels than this (as decoded, before any resize): a small file can hold a huge picture. */
  maxPixels?: number;
  /** What errors call a picture given as bytes (default "the image data"), e.g. the request field it came from. */
  name?: string;
}

const ACCEPTED_FORMATS = ['png', 'jpeg', 'webp'];

/**
 * Decodes a PNG, JPEG or WebP file (or its bytes) to an RgbImage. Transparent pixels are
 * composited on white (emoji images are mostly transparent), EXIF orientation is applied, and with a
 * size the image is resized (and centre-cropped for 'cover'). Errors name the file.
 */
export async function readImage(source: string | Buffer, options: ReadImageOptions = {}): Promise<RgbImage> {
  const path = typeof source === 'string' ? source : (options.name ?? 'the image data');
  if (typeof source === 'string') {
    const info = await stat(source).catch((error: NodeJS.ErrnoException) => {
      throw new Error(`readImage: cannot open ${source}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`);
    });
    if (!info.isFile()) throw new Error(`readImage: ${source} is not a file`);
  }

  // The format by content, not by name: libvips also decodes GIF, TIFF, SVG, HEIF…, which Nuri
  // does not promise (SVG would even fetch what it references).
  const metadata = await sharp(source)
    .metadata()
    .catch((error: Error) => {
      throw new Error(`readImage: ${path} is not a readable PNG, JPEG or WebP image: ${error.message}`);
    });
  const format = metadata.format as string | undefined;
  if (!format || !ACCEPTED_FORMATS.includes(format)) {
    throw new Error(`readImage: ${path} is ${format ? `a ${format.toUpperCase()} image` : 'of an unknown format'} (by its content); only PNG, JPEG and WebP are read`);
  }
  const pixels = (metadata.width ?? 0) * (metadata.height ?? 0);
  if (options.maxPixels !== undefined && pixels > options.maxPixels) {
    throw new Error(`readImage: ${path} is ${metadata.width}×${metadata.height} (${(pixels / 1e6).toFixed(1)} megapixels), over the limit of ${(options.maxPixels / 1e6).toFixed(1)}`);
  }
  let pipeline = sharp(source).rotate().flatten({ background: '#ffffff' });
  if (options.width !== undefined || options.height !== undefined) {
    pipeline = pipeline.resize(options.width, options.height, {
      fit: options.fit ?? 'cover',
      position: 'centre',
      background: '#ffffff',
    });
  }
  try {
    const { data, info: raw } = await pipeline
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    return fromRgb8(data, raw.width, raw.height, raw.channels);
  } catch (error) {
    throw new Error(`readImage: ${path} is not a readable PNG, JPEG or WebP image: ${(error as Error).message}`);
  }
}

/** Interleaved 8-bit pixels (HWC; 3 channels, or 4 whose alpha is ignored) to an RgbImage. */
export function fromRgb8(pixels: Uint8Array, width: number, height: number, channels = 3): RgbImage {
  if (channels !== 3 && channels !== 4) throw new Error(`fromRgb8: expected 3 or 4 channels, got ${channels}`);
  if (pixels.length !== width * height * channels) {
    throw new Error(`fromRgb8: ${pixels.length} bytes is not ${width}x${height}x${channels}`);
  }
  const image = createImage(width, height);
  const plane = width * height;
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) image.data[c * plane + i] = pixels[i * channels + c] / 255;
  }
  return image;
}

/**
 * Interleaved 8-bit RGB (HWC) for encoders. Rounds as diffusers' `numpy_to_pil` does: clamp to
 * [0, 1], multiply by 255 in float32, round half to even (numpy's `round`).
 */
export function toRgb8(image: RgbImage): Buffer {
  const plane = image.width * image.height;
  const out = Buffer.alloc(plane * 3);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const x = Math.min(1, Math.max(0, image.data[c * plane + i]));
      out[i * 3 + c] = roundHalfEven(Math.fround(x * 255));
    }
  }
  return out;
}

function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * One image of an NCHW batch, e.g. the VAE decoder's output. `range` says what the tensor holds;
 * values are mapped to [0, 1] and clamped (diffusers: `(x / 2 + 0.5).clamp(0, 1)`).
 */
export function imageFromTensor(
  data: Float32Array,
  batchIndex: number,
  shape: readonly [number, number, number, number],
  range: TensorRange,
): RgbImage {
  const [batch, channels, height, width] = shape;
  if (channels !== 3) throw new Error(`imageFromTensor: expected 3 channels, got shape [${shape.join(', ')}]`);
  if (data.length !== batch * channels * height * width) {
    throw new Error(`imageFromTensor: ${data.length} values do not fill shape [${shape.join(', ')}]`);
  }
  if (!Number.isInteger(batchIndex) || batchIndex < 0 || batchIndex >= batch) {
    throw new Error(`imageFromTensor: batch index ${batchIndex} out of range [0, ${batch})`);
  }
  const size = 3 * height * width;
  const source = data.subarray(batchIndex * size, (batchIndex + 1) * size);
  const image = createImage(width, height);
  for (let i = 0; i < size; i++) {
    const x = range === '-1..1' ? source[i] / 2 + 0.5 : source[i];
    image.data[i] = Math.min(1, Math.max(0, x));
  }
  return image;
}

/** Stacks same-sized images into an NCHW tensor [N, 3, H, W] in `range` (for the VAE encoder). */
export function imageToTensor(images: readonly RgbImage[], range: TensorRange): Float32Array {
  if (images.length === 0) throw new Error('imageToTensor: no images');
  const { width, height } = images[0];
  const size = 3 * width * height;
  const out = new Float32Array(images.length * size);
  images.forEach((image, n) => {
    if (image.width !== width || image.height !== height) {
      throw new Error(`imageToTensor: image ${n} is ${image.width}x${image.height}, expected ${width}x${height}`);
    }
    for (let i = 0; i < size; i++) {
      out[n * size + i] = range === '-1..1' ? 2 * image.data[i] - 1 : image.data[i];
    }
  });
  return out;
}

/** The image scaled to width × height (stretched; Lanczos, in 8-bit sRGB as PIL's resize works). */
export async function resizeImage(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  if (image.width === width && image.height === height) return image;
  const { data, info } = await sharp(toRgb8(image), { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return fromRgb8(data, info.width, info.height, info.channels);
}

/** The image `factor` times larger, each pixel a factor × factor block (nearest neighbour: small model outputs stay crisp). */
export function enlarge(image: RgbImage, factor: number): RgbImage {
  if (!Number.isInteger(factor) || factor < 1) throw new Error(`enlarge: the factor must be a whole number ≥ 1, got ${factor}`);
  if (factor === 1) return image;
  const big = createImage(image.width * factor, image.height * factor);
  const [plane, bigPlane] = [image.width * image.height, big.width * big.height];
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < big.height; y++) {
      const row = c * plane + Math.floor(y / factor) * image.width;
      for (let x = 0; x < big.width; x++) big.data[c * bigPlane + y * big.width + x] = image.data[row + Math.floor(x / factor)];
    }
  }
  return big;
}
