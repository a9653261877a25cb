// Token grounding (TokenCompose's token loss): the term's value on hand-made maps, its gradient
// against finite differences, the feeds a UNet training task builds, and a few steps that pull the
// tiny UNet's cross-attention onto the toy shapes.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { AdamW, Generator, Tensor, softmax } from '../../src/engine/index.ts';
import { ImageFolderDataset } from '../../src/data/folder.ts';
import { createImage } from '../../src/io/image.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { checkGroundable, groundedTokenWeights, groundingTerm, objectMasks } from '../../src/training/grounding.ts';
import { lrSchedule, train } from '../../src/training/index.ts';
import { unetTrainingTask } from '../../src/training/unet-training.ts';
import { evaluate, gradCheck, input } from '../engine/helpers.ts';
import { TINY_SD } from '../fixtures.ts';
import { writeToyShapes } from './toy-data.ts';

let images: string;
beforeAll(async () => {
  images = await writeToyShapes(64);
});
afterAll(() => rmSync(images, { recursive: true, force: true }));

describe('token grounding', () => {
  it("is (1 − the token map's share on the object)², weighted by token, averaged over items and heads", async () => {
    // One item, 2 heads, 4 query positions (the object is the first two), 3 tokens.
    const probs = [
      // head 0: token 1 all on the object, token 2 spread evenly
      [0.5, 0, 0.25], [0.5, 0, 0.25], [0, 0.5, 0.25], [0, 0.5, 0.25],
      // head 1: token 1 all on the object, token 2 all off it
      [0.25, 0.5, 0], [0, 0.5, 0], [0, 0, 0.5], [0.75, 0, 0.5],
    ].flat();
    const term = groundingTerm(input('p', [1, 2, 4, 3], probs), input('m', [1, 4], [1, 1, 0, 0]), input('t', [1, 3], [0, 0.5, 0.5]));
    const { y } = await evaluate({ y: term });
    // head 0: token 1 share 0 → (1 − 0)², token 2 share 1/2 → 1/4; head 1: token 1 → 0, token 2 → 1
    const expected = (0.5 * 1 + 0.5 * 0.25 + (0.5 * 0 + 0.5 * 1)) / 2;
    expect((y.data as Float32Array)[0]).toBeCloseTo(expected, 6);
  });

  it('has the gradient finite differences give, through the softmax', async () => {
    const term = (scores: Tensor, mask: Tensor, tokens: Tensor) => groundingTerm(softmax(scores, -1), mask, tokens);
    await gradCheck(term, [{ shape: [2, 2, 6, 5], range: [-2, 2] }, { shape: [2, 6], range: [0, 1] }, { shape: [2, 5], range: [0, 1] }]);
  });

  it('weights the caption\'s own tokens, not BOS, end-of-text or an empty caption', () => {
    const { tokenizer } = loadStableDiffusion(TINY_SD);
    const w = groundedTokenWeights(tokenizer, ['red heart', '']);
    const n = tokenizer.encode('red heart').length;
    const row = tokenizer.modelMaxLength;
    expect([...w.subarray(0, n + 2)]).toEqual([0, ...Array(n).fill(Math.fround(1 / n)), 0]);
    expect(w.subarray(n + 2, row).every((v) => v === 0)).toBe(true);
    expect(w.subarray(row).every((v) => v === 0)).toBe(true);
  });

  it("gives each map cell the object's share of it (the object: what is not background white)", () => {
    const image = createImage(4, 4, [1, 1, 1]);
    for (const i of [0, 1, 4, 5, 6]) image.data[i] = 0; // red channel off: cyan pixels, not white
    const [full, half] = objectMasks(image, [
      { name: 'a', input: Tensor.input('a', [1, 16]), height: 4, width: 4 },
      { name: 'b', input: Tensor.input('b', [1, 4]), height: 2, width: 2 },
    ]);
    expect([...full]).toEqual([1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect([...half]).toEqual([1, 0.25, 0, 0]);
  });

  it('refuses a data set whose pictures have no background white (photographs)', () => {
    const onWhite = createImage(8, 8, [1, 1, 1]);
    onWhite.data.fill(0, 0, 16); // a red-channel-off band: a cyan object on white
    const photo = createImage(8, 8, [0.4, 0.5, 0.3]);
    const name = (i: number) => `photo-${i}.png`;
    expect(() => checkGroundable([0, 1, 2].map((i) => ({ name: name(i), image: photo })).concat({ name: 'shape.png', image: onWhite }))).toThrow(
      /--grounding: 3 of 4 training pictures \(e\.g\. photo-0\.png\) have no background white/,
    );
    // Half or fewer without white: trained as asked.
    expect(() => checkGroundable([{ name: 'a.png', image: photo }, { name: 'b.png', image: onWhite }])).not.toThrow();
  });

  it('trains the UNet to put caption words on the object', async () => {
    const sd = loadStableDiffusion(TINY_SD);
    const data = await ImageFolderDataset.load(images, { resolution: 64, requireCaptions: true });
    const task = await unetTrainingTask(sd, data, { batch: 4, grounding: 1 });
    const feeds = (await task.nextBatch(new Generator(1), 0)) as Record<string, { data: Float32Array; shape: number[] }>;
    const maskNames = Object.keys(feeds).filter((k) => k.startsWith('object_mask_'));
    expect(maskNames.length).toBeGreaterThan(0);
    for (const name of maskNames) {
      const { data: m, shape } = feeds[name];
      expect(shape[0]).toBe(4);
      const share = m.reduce((a, b) => a + b, 0) / m.length; // the toy shapes cover 38–49% of the picture
      expect(share).toBeGreaterThan(0.3);
      expect(share).toBeLessThan(0.6);
    }
    expect(feeds.grounded_tokens.shape).toEqual([4, sd.tokenizer.modelMaxLength]);

    const params = task.step.params;
    const lr = 1e-2;
    const grounding: number[] = [];
    await train({ task, optimizer: new AdamW(params, { lr }), lr: lrSchedule({ kind: 'constant', lr }), steps: 16, rng: new Generator(3), onStep: (s) => grounding.push(s.metrics.grounding) });
    expect(grounding.every(Number.isFinite)).toBe(true);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    // The grounding term falls well below where the untrained maps put it.
    expect(mean(grounding.slice(-3))).toBeLessThan(0.6 * mean(grounding.slice(0, 3)));
  });
});
