// "Only masked" inpainting (A1111's inpaint_full_res): the region around the mask, fitted to the
// aspect of the size the model draws at (cases worked by hand from A1111's expand_crop_region), and
// a whole run on tiny-sd: a 96×80 picture comes back 96×80, drawn at 64×64 around its mask, the
// pixels the mask does not reach exactly as they were.

import { describe, expect, it } from 'vitest';
import { createImage } from '../../src/io/image.ts';
import { cropForOnlyMasked, fitToAspect, maskedRegion } from '../../src/pipelines/inpaint-only-masked.ts';
import { generate } from '../../src/pipelines/generate.ts';
import { type Mask, blurMask } from '../../src/pipelines/masks.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { TINY_SD } from '../fixtures.ts';

/** A w × h mask with the rectangle [x1, x2) × [y1, y2) set. */
function block(w: number, h: number, x1: number, y1: number, x2: number, y2: number): Mask {
  const data = new Float32Array(w * h);
  for (let y = y1; y < y2; y++) data.fill(1, y * w + x1, y * w + x2);
  return { width: w, height: h, data };
}

describe('the region drawn', () => {
  it("is the mask's bounding box grown by the padding, within the picture", () => {
    expect(maskedRegion(block(100, 80, 40, 30, 50, 40), 5)).toEqual({ x1: 35, y1: 25, x2: 55, y2: 45 });
    expect(maskedRegion(block(100, 80, 0, 70, 10, 80), 32)).toEqual({ x1: 0, y1: 38, x2: 42, y2: 80 });
    expect(maskedRegion(block(100, 80, 0, 0, 0, 0), 5)).toBeUndefined();
  });

  it('grows to the aspect of the drawing size, evenly, away from an edge, and no further than the picture', () => {
    const square = { x1: 35, y1: 25, x2: 55, y2: 45 };
    expect(fitToAspect(square, 64, 64, 100, 80)).toEqual(square);
    expect(fitToAspect(square, 128, 64, 100, 80)).toEqual({ x1: 25, y1: 25, x2: 65, y2: 45 });
    expect(fitToAspect(square, 64, 128, 100, 80)).toEqual({ x1: 35, y1: 15, x2: 55, y2: 55 });
    expect(fitToAspect({ x1: 90, y1: 10, x2: 100, y2: 20 }, 128, 64, 100, 80)).toEqual({ x1: 80, y1: 10, x2: 100, y2: 20 });
    expect(fitToAspect({ x1: 0, y1: 0, x2: 30, y2: 30 }, 128, 64, 30, 30)).toEqual({ x1: 0, y1: 0, x2: 30, y2: 30 });
    expect(fitToAspect({ x1: 10, y1: 10, x2: 21, y2: 20 }, 64, 64, 100, 80)).toEqual({ x1: 10, y1: 10, x2: 21, y2: 21 }); // 11 × 10: one more row
  });

  it('is cut out and scaled to the drawing size, the padding measured on the blurred mask', async () => {
    const picture = createImage(96, 80, [0.2, 0.4, 0.6]);
    const mask = block(96, 80, 40, 30, 50, 40);
    const crop = await cropForOnlyMasked(picture, mask, { width: 64, height: 64, padding: 4, blur: 2 });
    expect(crop.region).toEqual(maskedRegion(blurMask(mask, 2), 4));
    expect(crop.region.x2 - crop.region.x1).toBeGreaterThan(18); // the blur reaches 5 px past the block
    expect([crop.image.width, crop.image.height, crop.mask.width, crop.mask.height]).toEqual([64, 64, 64, 64]);
    expect(crop.image.data.every((v, i) => Math.abs(v - [0.2, 0.4, 0.6][Math.floor(i / 4096)]) < 1 / 255)).toBe(true);
    await expect(cropForOnlyMasked(picture, block(64, 64, 0, 0, 8, 8), { width: 64, height: 64, padding: 0, blur: 0 })).rejects.toThrow(/the mask is 64×64, the picture 96×80/);
  });
});

describe('generate with inpaint.onlyMasked', () => {
  it('draws the masked part at the run size and returns the whole picture, unmasked pixels as they were', async () => {
    const sd = StableDiffusion.load(TINY_SD);
    const picture = createImage(96, 80);
    picture.data.forEach((_, i) => (picture.data[i] = ((i * 7919) % 97) / 96)); // no two neighbours alike
    const mask = block(96, 80, 40, 30, 56, 46);
    const result = await generate(sd, { prompts: ['a red bench'], steps: 2, seed: 3, width: 64, height: 64, initImage: picture, inpaint: { mask, blur: 2, onlyMasked: { padding: 8 } } });
    const [image] = result.images;
    expect([image.width, image.height]).toEqual([96, 80]);
    expect(result.shape.slice(2).map((d) => d * sd.vaeScaleFactor)).toEqual([64, 64]);
    const soft = blurMask(mask, 2).data;
    const plane = 96 * 80;
    let [inside, change] = [0, 0];
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) {
        const [was, now] = [picture.data[c * plane + i], image.data[c * plane + i]];
        if (soft[i] === 0) expect(now).toBe(was);
        else if (soft[i] === 1) [inside, change] = [inside + 1, change + Math.abs(now - was)];
      }
    }
    expect(change / inside).toBeGreaterThan(0.1);
  });
});
