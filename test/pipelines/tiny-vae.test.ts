// A pipeline with a tiny VAE (TAESD): given as `vae` it makes the pictures (and encodes img2img's),
// given as `previewVae` only the step previews; without one, previews are the linear latent map.
import { beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { imageToTensor } from '../../src/io/image.ts';
import { loadAutoencoderTiny } from '../../src/models/checkpoint/components.ts';
import { latentPreview } from '../../src/models/latent-preview.ts';
import { TinyVaeRunner } from '../../src/models/tiny-vae-runner.ts';
import { type StepProgress, generate } from '../../src/pipelines/generate.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { FIXTURES, TINY_SD } from '../fixtures.ts';
import { maxAbsDiff } from '../schedulers/reference.ts';

const TINY_TAESD = join(FIXTURES, 'tiny-taesd');
const SETTINGS = { prompts: ['a photo of a cat'], steps: 2, width: 64, height: 64, seed: 3, guidance: 1 };
const taesd = new TinyVaeRunner(loadAutoencoderTiny(TINY_TAESD));

describe('a pipeline with a tiny VAE', () => {
  let withTiny: StableDiffusion;
  let previewOnly: StableDiffusion;
  let plain: StableDiffusion;
  beforeAll(() => {
    withTiny = StableDiffusion.load(TINY_SD, { vae: TINY_TAESD });
    previewOnly = StableDiffusion.load(TINY_SD, { previewVae: TINY_TAESD });
    plain = StableDiffusion.load(TINY_SD);
  });

  it('decodes the picture and the previews with TAESD when given as vae; the loop waits for an async callback', async () => {
    const previews: { width: number; data: Float32Array; expected: Float32Array }[] = [];
    const events: string[] = [];
    const result = await generate(withTiny, {
      ...SETTINGS,
      onProgress: async (p: StepProgress) => {
        events.push(`step ${p.step}`);
        const [image] = await p.decodePreview();
        const expected = (await taesd.decodeLatents(p.predictedClean, p.shape)).data;
        previews.push({ width: image.width, data: image.data, expected });
        events.push(`preview ${p.step}`);
      },
    });
    events.push('done');
    expect(events).toEqual(['step 1', 'preview 1', 'step 2', 'preview 2', 'done']);
    expect(previews.map((p) => p.width)).toEqual([64, 64]);
    for (const p of previews) expect(maxAbsDiff(p.data, p.expected)).toBeLessThan(1e-6);
    const byTaesd = await taesd.decodeLatents(result.latents, result.shape);
    expect(maxAbsDiff(result.images[0].data, byTaesd.data)).toBeLessThan(1e-6);
    // The same latents through the model's own VAE give another picture.
    const byKl = (await plain.decodeLatents(result.latents, result.shape)).data;
    expect(maxAbsDiff(result.images[0].data, byKl)).toBeGreaterThan(1e-2);
  });

  it('encodes img2img pictures with TAESD when given as vae', async () => {
    const picture = imageToTensor([{ width: 64, height: 64, channels: 3, data: Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => (i % 17) / 16) }], '-1..1');
    const ours = await withTiny.imageToLatents(picture, [1, 3, 64, 64]);
    expect(maxAbsDiff(ours.data, (await taesd.imageToLatents(picture, [1, 3, 64, 64])).data)).toBe(0);
    expect(maxAbsDiff(ours.data, (await plain.imageToLatents(picture, [1, 3, 64, 64])).data)).toBeGreaterThan(1e-3);
  });

  it('keeps the model\'s VAE for the picture when TAESD is only the preview VAE', async () => {
    const sizes: number[] = [];
    const a = await generate(previewOnly, { ...SETTINGS, onStep: async (p: StepProgress) => void sizes.push((await p.decodePreview())[0].width) });
    const b = await generate(plain, SETTINGS);
    expect(sizes).toEqual([64, 64]);
    expect(maxAbsDiff(a.images[0].data, b.images[0].data)).toBe(0);
  });

  it('previews with the linear latent map, at latent size, without a tiny VAE', async () => {
    const previews: { got: Float32Array; expected: Float32Array }[] = [];
    await generate(plain, { ...SETTINGS, onStep: async (p: StepProgress) => void previews.push({ got: (await p.decodePreview())[0].data, expected: latentPreview(p.predictedClean, p.shape)[0].data }) });
    expect(previews.length).toBe(2);
    for (const p of previews) expect(maxAbsDiff(p.got, p.expected)).toBe(0);
    expect(previews[0].got.length).toBe(3 * 8 * 8);
  });

  it('refuses a tiny VAE given twice', () => {
    expect(() => StableDiffusion.load(TINY_SD, { vae: TINY_TAESD, previewVae: TINY_TAESD })).toThrow(/not both/);
    expect(() => StableDiffusion.load(TINY_SD, { previewVae: join(TINY_SD, 'vae') })).toThrow(/not an AutoencoderTiny folder/);
  });
});
