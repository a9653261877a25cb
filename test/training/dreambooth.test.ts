// DreamBooth: the prior-preservation loss and its gradients against diffusers' train_dreambooth.py
// (reference case train_dreambooth_prior); a few full fine-tuning steps lower the loss on a fixed
// batch; `nuri train dreambooth` end to end on the tiny pipeline (class images generated, full
// diffusers-folder output; LoRA with the text encoder, checkpoint and resume).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { AdamW, Generator, readSafetensors } from '../../src/engine/index.ts';
import { registerTrain } from '../../src/cli/train.ts';
import { registerPersonalisation } from '../../src/cli/train-personalise.ts';
import { createImage } from '../../src/io/image.ts';
import { writePng } from '../../src/io/png.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { loadLoraFile } from '../../src/models/lora.ts';
import { diffusionFeeds } from '../../src/training/diffusion-loss.ts';
import { LORA_WEIGHTS_FILE, compileDreamBoothStep } from '../../src/training/dreambooth.ts';
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

/** `nuri train …` in this process (sessions compiled by earlier tests are reused). */
async function nuri(args: string[]): Promise<void> {
  const program = new Command('nuri').exitOverride();
  registerPersonalisation(registerTrain(program));
  await program.parseAsync(args, { from: 'user' });
}

// 128-pixel images make 16×16 latents and 2 instance + 2 class items: the full run's step graph is
// the one compiled above, so only the LoRA graph is new here.
describe('nuri train dreambooth', () => {
  const classDir = () => join(dir, 'class-images');
  const common = () => ['train', 'dreambooth', '--model', TINY_SD, '--images', join(dir, 'instances'), '--instance-prompt', 'a photo of sks dog', '--resolution', '128'];
  const prior = () => ['--class-prompt', 'a photo of dog', '--class-images', '2', '--class-dir', classDir()];

  it('generates missing class images and, without --lora-rank, writes a full diffusers folder that loads', async () => {
    await writeImages(join(dir, 'instances'), 2);
    const out = join(dir, 'full-run');
    await nuri([...common(), ...prior(), '--class-steps', '2', '--batch', '2', '--steps', '1', '--lr', '1e-3', '--out', out]);
    expect(readdirSync(classDir()).filter((n) => n.endsWith('.png'))).toHaveLength(2);
    const trained = loadStableDiffusion(out);
    const base = loadStableDiffusion(TINY_SD);
    const w = (m: typeof base, name: string) => m.unet.parameters().find((p) => p.name === name)!.value();
    expect(w(trained, 'conv_in.weight')).not.toEqual(w(base, 'conv_in.weight'));
    expect(w(trained, 'down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight')).not.toEqual(w(base, 'down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight'));
    expect(trained.textEncoder.parameters()[0].value()).toEqual(base.textEncoder.parameters()[0].value());
  });

  it('with --lora-rank and --train-text-encoder trains adapters only, resumes, and writes a LoRA file', async () => {
    const out = join(dir, 'lora-run');
    const args = [...common(), ...prior(), '--train-text-encoder', '--lora-rank', '2', '--lr', '1e-2', '--out', out];
    await nuri([...args, '--steps', '2']);
    await nuri([...args, '--steps', '3', '--resume']);
    const read = loadLoraFile(join(out, LORA_WEIGHTS_FILE), loadStableDiffusion(TINY_SD));
    expect(read.unmatched).toEqual([]);
    expect(new Set(read.layers.map((l) => l.component))).toEqual(new Set(['unet', 'text_encoder']));
    expect(read.layers.some((l) => l.up.some((v) => v !== 0))).toBe(true);
    expect(existsSync(join(out, 'model_index.json'))).toBe(false);
  });

  it('refuses a full fine-tune of a single-file model before doing any work', async () => {
    await expect(nuri([...common(), '--model', join(TINY_SD, '..', 'tiny-sd-single.safetensors'), '--out', join(dir, 'nothing')])).rejects.toThrow(/--lora-rank/);
    expect(existsSync(join(dir, 'nothing'))).toBe(false);
  });
});
