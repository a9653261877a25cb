// Contrastive CLIP training and VAE training on a toy set of coloured shapes, end to end through
// the folder data set, the task builders and the generic loop.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { AdamW, Generator } from '../../src/engine/index.ts';
import { ImageFolderDataset } from '../../src/data/folder.ts';
import { ClipModel } from '../../src/models/clip.ts';
import { parseClipConfig } from '../../src/models/checkpoint/clip-config.ts';
import { AutoencoderKL } from '../../src/models/vae.ts';
import { parseVaeConfig } from '../../src/models/checkpoint/vae-config.ts';
import { ClipTokenizer } from '../../src/tokenizers/clip.ts';
import { clipRetrievalAccuracy, clipTrainingTask } from '../../src/training/clip-training.ts';
import { lrSchedule, train } from '../../src/training/index.ts';
import { vaeTrainingTask } from '../../src/training/vae-training.ts';
import { TINY_SD } from '../fixtures.ts';
import { writeToyShapes } from './toy-data.ts';

let dir: string;
beforeAll(async () => {
  dir = await writeToyShapes(16);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const average = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('CLIP training', () => {
  it('raises image→text retrieval accuracy on 8 coloured shapes from chance to well above it', async () => {
    const tokenizer = ClipTokenizer.fromFolder(join(TINY_SD, 'tokenizer'));
    const model = new ClipModel(
      parseClipConfig({
        projection_dim: 16,
        text_config: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, max_position_embeddings: 8, eos_token_id: 49407 },
        vision_config: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, image_size: 16, patch_size: 4 },
      }),
    );
    model.init(new Generator(3));
    const data = await ImageFolderDataset.load(dir, { resolution: 16 });
    const before = await clipRetrievalAccuracy(model, tokenizer, data);

    const task = await clipTrainingTask(model, tokenizer, data, { batch: 8 });
    const params = task.step.params;
    const result = await train({ task, optimizer: new AdamW(params, { lr: 3e-3, weightDecay: 0 }), lr: lrSchedule({ kind: 'constant', lr: 3e-3, warmup: 5 }), steps: 60, rng: new Generator(1) });
    const after = await clipRetrievalAccuracy(model, tokenizer, data);
    if (process.env.NURI_REPORT) console.log({ before, after, first: result.losses[0], last: result.losses.at(-1) });
    expect(average(result.losses.slice(-5))).toBeLessThan(average(result.losses.slice(0, 5)) / 2);
    expect(after).toBeGreaterThanOrEqual(0.75); // chance: 1/8
    expect(after).toBeGreaterThan(before);
    expect(model.logitScale.value()[0]).not.toBe(2.6592); // the temperature is learned too
  });
});

describe('VAE training', () => {
  it('lowers the reconstruction + KL loss of a tiny AutoencoderKL on the toy set', async () => {
    const vae = new AutoencoderKL(
      parseVaeConfig({ block_out_channels: [8, 16], down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'], up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'], latent_channels: 2, norm_num_groups: 4, layers_per_block: 1 }),
    );
    vae.init(new Generator(4));
    const data = await ImageFolderDataset.load(dir, { resolution: 8 });
    const task = await vaeTrainingTask(vae, data, { batch: 4, flip: true, reconstruction: 'l1', klWeight: 1e-3 });
    const params = task.step.params;
    const metrics: { reconstruction: number; kl: number }[] = [];
    const result = await train({
      task,
      optimizer: new AdamW(params, { lr: 3e-3 }),
      lr: lrSchedule({ kind: 'cosine', lr: 3e-3, warmup: 3, totalSteps: 40 }),
      steps: 40,
      rng: new Generator(2),
      maxGradNorm: 1,
      onStep: (s) => metrics.push(s.metrics as { reconstruction: number; kl: number }),
    });
    if (process.env.NURI_REPORT) console.log({ first: result.losses.slice(0, 3), last: result.losses.slice(-3) });
    expect(average(result.losses.slice(-5))).toBeLessThan(0.6 * average(result.losses.slice(0, 5)));
    expect(metrics.every((m) => m.reconstruction > 0 && m.kl >= 0)).toBe(true);
  });
});
