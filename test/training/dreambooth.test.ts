// DreamBooth: the prior-preservation loss and its gradients against diffusers' train_dreambooth.py
// (reference case train_dreambooth_prior); a few full fine-tuning steps lower the loss on a fixed
// batch; the whole command path (class images generated, LoRA trained with the text encoder,
// checkpoint, resume, full diffusers-folder output) on the tiny pipeline.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdamW, Generator, readSafetensors } from '../../src/engine/index.ts';
import { createImage } from '../../src/io/image.ts';
import { writePng } from '../../src/io/png.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { loadLoraFile } from '../../src/models/lora.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { diffusionFeeds } from '../../src/training/diffusion-loss.ts';
import { LORA_WEIGHTS_FILE, compileDreamBoothStep, trainDreamBooth } from '../../src/training/dreambooth.ts';
import { noiseSchedule, tokenIdsFeed } from '../../src/training/fine-tune.ts';
import { TINY_SD, referenceCase } from '../fixtures.ts';

const CASE = referenceCase('train_dreambooth_prior');
const ref = readSafetensors(CASE.file);
const f32 = (name: string) => ref.get(name)!.data as Float32Array;
const GRADS = ['conv_in.weight', 'down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight'];

function relativeError(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** The reference batch (2 instance + 2 class items) as step feeds. */
function referenceFeeds(c: ReturnType<typeof loadStableDiffusion>) {
  const schedule = noiseSchedule(c);
  const timesteps = [...(ref.get('timesteps')!.data as BigInt64Array)].map(Number);
  return {
    schedule,
    feeds: { ...diffusionFeeds(schedule.alphasCumprod, f32('latents'), [4, 4, 16, 16], f32('noise'), timesteps), input_ids: tokenIdsFeed(c.tokenizer, CASE.prompts as string[]) },
  };
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nuri-dreambooth-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('DreamBooth prior preservation vs diffusers', () => {
  it('instance, prior and total loss within 1e-6 and UNet gradients within 1e-4 (relative)', async () => {
    const c = loadStableDiffusion(TINY_SD);
    const { schedule, feeds } = referenceFeeds(c);
    expect([...feeds.input_ids.data]).toEqual([...(ref.get('input_ids')!.data as BigInt64Array)]);
    // Every UNet parameter trains (the next test's graph, compiled once); two have reference gradients.
    const params = c.unet.parameters();
    const step = await compileDreamBoothStep(c, params, { instanceBatch: 2, priorLossWeight: CASE.prior_loss_weight as number, latentShape: [4, 16, 16], schedule });
    const out = await step.run(feeds);
    const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
    expect(rel(out.metrics.instance_loss, f32('instance_loss')[0])).toBeLessThan(1e-6);
    expect(rel(out.metrics.prior_loss, f32('prior_loss')[0])).toBeLessThan(1e-6);
    expect(rel(out.loss, f32('loss')[0])).toBeLessThan(1e-6);
    for (const name of GRADS) {
      const i = params.findIndex((p) => p.name === name);
      expect(relativeError(out.grads[i], f32(`grad.${name}`)), name).toBeLessThan(1e-4);
    }
  });

  it('a few full fine-tuning steps lower the loss on a fixed batch', async () => {
    const c = loadStableDiffusion(TINY_SD);
    const { schedule, feeds } = referenceFeeds(c);
    const params = c.unet.parameters();
    const step = await compileDreamBoothStep(c, params, { instanceBatch: 2, priorLossWeight: 1, latentShape: [4, 16, 16], schedule });
    const optimizer = new AdamW(params, { lr: 1e-3 });
    const losses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const out = await step.run(feeds);
      losses.push(out.loss);
      optimizer.step(out.grads);
    }
    expect(losses[3]).toBeLessThan(losses[0] * 0.9);
  });
});

async function writeImages(folder: string, count: number): Promise<void> {
  mkdirSync(folder, { recursive: true });
  const rng = new Generator(4);
  for (let i = 0; i < count; i++) {
    const image = createImage(128, 128, [0.2, 0.5, 0.2 + 0.3 * i]);
    const noise = rng.rand(image.data.length);
    image.data.forEach((v, k) => (image.data[k] = Math.min(1, 0.7 * v + 0.3 * noise[k])));
    await writePng(join(folder, `dog-${i}.png`), image);
  }
}

// 128-pixel images make 16×16 latents and 2 instance + 2 class items: the full run's step graph is
// the one compiled above, so only the LoRA graph is new here.
describe('trainDreamBooth', () => {
  const classDir = () => join(dir, 'class-images');

  it('generates missing class images and, without --lora-rank, writes a full diffusers folder that loads', async () => {
    const images = join(dir, 'instances');
    await writeImages(images, 2);
    const out = join(dir, 'full-run');
    const sd = StableDiffusion.load(TINY_SD);
    const result = await trainDreamBooth(sd, {
      modelPath: TINY_SD,
      images,
      instancePrompt: 'a photo of sks dog',
      classPrompt: 'a photo of dog',
      classImages: 2,
      classSteps: 2,
      classDir: classDir(),
      batch: 2,
      out,
      resolution: 128,
      steps: 1,
      lr: 1e-3,
    });
    expect(readdirSync(classDir()).filter((n) => n.endsWith('.png'))).toHaveLength(2);
    expect(result.output).toBe(out);
    expect(existsSync(join(out, 'model_index.json'))).toBe(true);
    const trained = loadStableDiffusion(out);
    const base = loadStableDiffusion(TINY_SD);
    const w = (m: { unet: typeof base.unet }, name: string) => m.unet.parameters().find((p) => p.name === name)!.value();
    expect(w(trained, 'conv_in.weight')).toEqual(w(sd.components, 'conv_in.weight'));
    expect(w(trained, 'conv_in.weight')).not.toEqual(w(base, 'conv_in.weight'));
  });

  it('trains LoRA on UNet + text encoder, resumes from its checkpoint, and writes a LoRA file', async () => {
    const out = join(dir, 'lora-run');
    const options = {
      modelPath: TINY_SD,
      images: join(dir, 'instances'),
      instancePrompt: 'a photo of sks dog',
      classPrompt: 'a photo of dog',
      classImages: 2,
      classDir: classDir(),
      trainTextEncoder: true,
      loraRank: 2,
      out,
      resolution: 128,
      lr: 1e-2,
    };
    const first = await trainDreamBooth(StableDiffusion.load(TINY_SD), { ...options, steps: 2 });
    expect(first.losses).toHaveLength(2);
    expect(first.output).toBe(join(out, LORA_WEIGHTS_FILE));
    const resumed = await trainDreamBooth(StableDiffusion.load(TINY_SD), { ...options, steps: 3, resume: true });
    expect([resumed.startStep, resumed.step, resumed.losses.length]).toEqual([2, 3, 1]);
    const read = loadLoraFile(resumed.output, loadStableDiffusion(TINY_SD));
    expect(read.unmatched).toEqual([]);
    expect(new Set(read.layers.map((l) => l.component))).toEqual(new Set(['unet', 'text_encoder']));
    expect(read.layers.some((l) => l.up.some((v) => v !== 0))).toBe(true);
  });
});
