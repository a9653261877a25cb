// AUTOMATIC1111's "Only masked" inpainting (its API's inpaint_full_res, on by default there): the
// masked part of a picture of any size is cut out with some padding, widened to the aspect of the
// size the model draws at, scaled to that size and inpainted there, and the result is scaled back
// and laid into the picture through the mask. A small area of a large picture is drawn at the
// model's full resolution, and the rest of the picture stays as it was, at its own size.

import { type RgbImage, createImage, resizeImage } from '../io/image.ts';
import { type Mask, blurMask, binarize } from './masks.ts';
import { overlayImage } from './inpaint.ts';

/** A rectangle of pixels: [x1, y1) to [x2, y2). */
export interface Region {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

/**
 * The bounding box of the mask's non-zero pixels (as an 8-bit mask has them: a blur's faint tail
 * below ½ of a level is zero) grown by `padding` on each side, within the picture; undefined for
 * an empty mask.
 */
export function maskedRegion(mask: Mask, padding: number): Region | undefined {
  let [x1, y1, x2, y2] = [mask.width, mask.height, 0, 0];
  for (let y = 0; y < mask.height; y++) {
    for (let x = 0; x < mask.width; x++) {
      if (mask.data[y * mask.width + x] < 0.5 / 255) continue;
      [x1, y1, x2, y2] = [Math.min(x1, x), Math.min(y1, y), Math.max(x2, x + 1), Math.max(y2, y + 1)];
    }
  }
  if (x2 === 0) return undefined;
  return { x1: Math.max(0, x1 - padding), y1: Math.max(0, y1 - padding), x2: Math.min(mask.width, x2 + padding), y2: Math.min(mask.height, y2 + padding) };
}

/**
 * The region grown along one axis to the aspect of width × height, as evenly on both sides as the
 * picture allows (A1111's expand_crop_region): a region that hits an edge grows the other way, and
 * one larger than the picture along that axis stops at the picture.
 */
export function fitToAspect(region: Region, width: number, height: number, imageWidth: number, imageHeight: number): Region {
  const r = { ...region };
  const grow = (lo: 'x1' | 'y1', hi: 'x2' | 'y2', wanted: number, limit: number) => {
    const extra = Math.trunc(wanted - (r[hi] - r[lo]));
    r[lo] -= Math.floor(extra / 2);
    r[hi] += extra - Math.floor(extra / 2);
    if (r[hi] >= limit) {
      r[lo] -= r[hi] - limit;
      r[hi] = limit;
    }
    if (r[lo] < 0) {
      r[hi] -= r[lo];
      r[lo] = 0;
    }
    r[hi] = Math.min(r[hi], limit);
  };
  const [w, h] = [r.x2 - r.x1, r.y2 - r.y1];
  if (w / h > width / height) grow('y1', 'y2', (w * height) / width, imageHeight);
  else grow('x1', 'x2', (h * width) / height, imageWidth);
  return r;
}

function cropImage(image: RgbImage, r: Region): RgbImage {
  const [w, h] = [r.x2 - r.x1, r.y2 - r.y1];
  const out = createImage(w, h);
  const [plane, outPlane] = [image.width * image.height, w * h];
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < h; y++) out.data.set(image.data.subarray(c * plane + (r.y1 + y) * image.width + r.x1, c * plane + (r.y1 + y) * image.width + r.x2), c * outPlane + y * w);
  }
  return out;
}

function cropMask(mask: Mask, r: Region): Mask {
  const [w, h] = [r.x2 - r.x1, r.y2 - r.y1];
  const data = new Float32Array(w * h);
  for (let y = 0; y < h; y++) data.set(mask.data.subarray((r.y1 + y) * mask.width + r.x1, (r.y1 + y) * mask.width + r.x2), y * w);
  return { width: w, height: h, data };
}

const maskAsImage = (mask: Mask): RgbImage => ({ width: mask.width, height: mask.height, channels: 3, data: Float32Array.from({ length: 3 * mask.data.length }, (_, i) => mask.data[i % mask.data.length]) });
const imageAsMask = (image: RgbImage): Mask => ({ width: image.width, height: image.height, data: image.data.slice(0, image.width * image.height) });

export interface OnlyMaskedCrop {
  /** Where in the picture the model draws. */
  region: Region;
  /** That part of the picture and of the (blurred) mask, scaled to the model's width × height. */
  image: RgbImage;
  mask: Mask;
  /** Lays pictures drawn at width × height back into the whole picture through the mask. */
  paste(drawn: RgbImage[]): Promise<RgbImage[]>;
}

/**
 * Cuts the masked part out of `image` for drawing at width × height. `blur` is the mask's Gaussian
 * σ in pixels: the padding is measured from the blurred mask, whose soft edge the paste also uses
 * (the drawn part then needs no blur of its own). An empty mask gives the whole picture.
 */
export async function cropForOnlyMasked(image: RgbImage, mask: Mask, o: { width: number; height: number; padding: number; blur: number }): Promise<OnlyMaskedCrop> {
  if (mask.width !== image.width || mask.height !== image.height) throw new Error(`inpaint: the mask is ${mask.width}×${mask.height}, the picture ${image.width}×${image.height}`);
  if (!Number.isInteger(o.padding) || o.padding < 0) throw new Error(`only-masked padding must be a whole number of pixels ≥ 0, got ${o.padding}`);
  const soft = blurMask(mask, o.blur);
  const found = maskedRegion(soft, o.padding) ?? { x1: 0, y1: 0, x2: image.width, y2: image.height };
  const region = fitToAspect(found, o.width, o.height, image.width, image.height);
  const [w, h] = [region.x2 - region.x1, region.y2 - region.y1];
  const overlayMask = o.blur ? soft : binarize(soft);
  return {
    region,
    image: await resizeImage(cropImage(image, region), o.width, o.height),
    mask: imageAsMask(await resizeImage(maskAsImage(cropMask(soft, region)), o.width, o.height)),
    paste: (drawn) =>
      Promise.all(
        drawn.map(async (picture) => {
          const part = await resizeImage(picture, w, h);
          const placed = { ...image, data: image.data.slice() };
          const plane = image.width * image.height;
          for (let c = 0; c < 3; c++) {
            for (let y = 0; y < h; y++) placed.data.set(part.data.subarray(c * w * h + y * w, c * w * h + (y + 1) * w), c * plane + (region.y1 + y) * image.width + region.x1);
          }
          return overlayImage(image, placed, overlayMask);
        }),
      ),
  };
}
