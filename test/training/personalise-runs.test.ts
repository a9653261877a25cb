// Training as library calls: trainLora on images held in memory reports each step, writes its
// file, stops on an AbortSignal with a checkpoint (rejecting with an AbortError), and resumes from
// it, drawing sample pictures as it goes; trainTextualInversion takes encoded image bytes and
// refuses a format it does not read.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Generator } from '../../src/engine/index.ts';
import { type RgbImage, createImage } from '../../src/io/image.ts';
import { encodePng } from '../../src/io/png.ts';
import { loadLoraFile } from '../../src/models/lora.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { readEmbeddingFile } from '../../src/models/textual-inversion.ts';
import { listCheckpoints } from '../../src/training/checkpoint.ts';
import { type TrainingImage } from '../../src/training/training-images.ts';
import { trainLora, trainTextualInversion } from '../../src/training/personalise-runs.ts';
import type { TrainingProgress } from '../../src/training/training-run.ts';
import { TINY_SD } from '../fixtures.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nuri-personalise-runs-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function images(count: number): TrainingImage[] {
  const rng = new Generator(5);
  return Array.from({ length: count }, (_, i) => {
    const image = createImage(48, 40, [0.8, 0.2 * i, 0.3]); // not square, not 64: resized and cropped
    image.data.forEach((v, k) => (image.data[k] = Math.min(1, 0.8 * v + 0.2 * rng.rand(1)[0])));
    return { image, caption: `a red square number ${i}` };
  });
}

describe('trainLora as a library call', () => {
  it('reports every step, stops on abort with a checkpoint, and resumes to the end', async () => {
    const out = join(dir, 'lora');
    const controller = new AbortController();
    const seen: TrainingProgress[] = [];
    const common = { model: TINY_SD, images: images(2), out, rank: 2, steps: 3, lr: 1e-2, resolution: 64 };
    const stopped = trainLora({
      ...common,
      signal: controller.signal,
      onProgress: (p) => {
        seen.push(p);
        if (p.step === 1) controller.abort();
      },
    });
    await expect(stopped).rejects.toMatchObject({ name: 'AbortError', progress: { step: 1 } });
    expect(seen.map((p) => [p.phase, p.step, p.total])).toEqual([['training', 1, 3]]);
    expect(Number.isFinite(seen[0].loss)).toBe(true);
    expect(existsSync(join(out, 'pytorch_lora_weights.safetensors'))).toBe(false);
    expect(listCheckpoints(join(out, 'checkpoints')).map((c) => c.step)).toEqual([1]);

    await expect(trainLora(common)).rejects.toThrow(/already holds checkpoints/);
    const steps: number[] = [];
    const samples: { step: number; width: number; finite: boolean }[] = [];
    const result = await trainLora({
      ...common,
      resume: true,
      onProgress: (p) => steps.push(p.step),
      samples: { every: 1, prompt: 'a red square', steps: 2, onSample: ({ step, image }) => void samples.push({ step, width: image.width, finite: image.data.every(Number.isFinite) }) },
    });
    expect(steps).toEqual([2, 3]);
    expect(samples).toEqual([2, 3].map((step) => ({ step, width: 64, finite: true }))); // drawn by the model in training, at its resolution
    expect(result.step).toBe(3);
    expect(result.files).toEqual([join(out, 'pytorch_lora_weights.safetensors')]);
    const read = loadLoraFile(result.files[0], loadStableDiffusion(TINY_SD));
    expect(read.unmatched).toEqual([]);
    expect(read.layers.some((l) => l.up.some((v) => v !== 0))).toBe(true);
  });
});

describe('trainTextualInversion as a library call', () => {
  it('trains from encoded PNG bytes and writes the embedding', async () => {
    const bytes = await Promise.all(images(2).map(({ image }) => encodePng(image as RgbImage)));
    const result = await trainTextualInversion({ model: TINY_SD, images: bytes.map((image) => ({ image })), token: '<sq>', initToken: 'toy', out: join(dir, 'ti'), steps: 1, resolution: 64 });
    expect(result.files).toEqual([join(dir, 'ti', 'learned_embeds.safetensors')]);
    expect(readEmbeddingFile(result.files[0]).vectors[0].length).toBe(32);
  });

  it('refuses bytes that are not PNG, JPEG or WebP, naming the image', async () => {
    const gif = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');
    await expect(trainTextualInversion({ model: TINY_SD, images: [{ image: gif, name: 'cat.gif' }], token: '<sq>', initToken: 'toy', out: join(dir, 'ti-gif'), steps: 1, resolution: 64 })).rejects.toThrow(/cat\.gif.*not a PNG, JPEG or WebP.*gif/);
  });
});
