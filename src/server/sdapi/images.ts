// Base64 images in and out of the A1111 layer. Clients send bare base64 or a data: URL
// ("data:image/png;base64,…"), as A1111 accepts both; answers are bare base64 PNG, as A1111's are.

import sharp from 'sharp';
import { SdapiError } from './errors.ts';

const DATA_URL = /^data:image\/[\w.+-]+;base64,/i;
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** The bytes of a base64 image field; a 422 naming `field` when it is not base64. */
export function decodeBase64Image(value: string, field: (string | number)[]): Buffer {
  const text = value.trim().replace(DATA_URL, '').replace(/\s+/g, '');
  if (!text || !BASE64.test(text)) throw SdapiError.invalid(field, 'is not a base64 image (nor a data:image/…;base64, URL)');
  return Buffer.from(text, 'base64');
}

/** A1111's resize modes: 0 just resize (stretch), 1 crop and resize, 2 resize and fill, 3 latent upscale. */
const FITS = ['fill', 'cover', 'contain', 'fill'] as const;

/**
 * The init image (or mask) as a PNG at the size asked for (when one is, and not `ownSize`, as
 * "Only masked" inpainting keeps it), resized the way `resize_mode` says; a 422 naming the field
 * when the bytes are not an image sharp can decode.
 */
export async function prepareInitImage(bytes: Buffer, field: (string | number)[], size: { width: number | null; height: number | null }, resizeMode: number, options: { invert?: boolean; ownSize?: boolean } = {}): Promise<Buffer> {
  let image = sharp(bytes);
  try {
    await image.metadata();
  } catch {
    throw SdapiError.invalid(field, 'is not a PNG, JPEG or WebP image');
  }
  image = image.rotate().flatten({ background: '#ffffff' });
  if (size.width !== null && size.height !== null && !options.ownSize) {
    image = image.resize(size.width, size.height, { fit: FITS[resizeMode], position: 'centre', background: '#ffffff' });
  }
  // A mask's inpainting_mask_invert: white and black swap.
  if (options.invert) image = image.negate({ alpha: false });
  return image.png().toBuffer();
}
