// Fine-tuning only a VAE's decoder: the encoder (and so every latent a UNet was trained on) stays
// exactly as it was, while reconstructions improve.
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageFolderDataset } from '../../src/data/folder.ts';
import { AdamW, Generator } from '../../src/engine/index.ts';
import { AutoencoderKL } from '../../src/models/vae.ts';
import { parseVaeConfig } from '../../src/models/checkpoint/vae-config.ts';
import { train } from '../../src/training/index.ts';
import { isDecoderParameter, vaeTrainingTask } from '../../src/training/vae-training.ts';
import { writeToyShapes } from './toy-data.ts';

let dir: string;
beforeAll(async () => {
  dir = await writeToyShapes(16);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('VAE decoder fine-tuning', () => {
  it('trains the decoder and post_quant_conv only; the encoder is untouched', async () => {
    const vae = new AutoencoderKL(
      parseVaeConfig({ block_out_channels: [8, 16], down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'], up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'], latent_channels: 2, norm_num_groups: 4, layers_per_block: 1 }),
    );
    vae.init(new Generator(4));
    const encoder = vae.parameters().filter((p) => !isDecoderParameter(p.name));
    const before = new Map(encoder.map((p) => [p.name, new Float32Array(p.value())]));
    const data = await ImageFolderDataset.load(dir, { resolution: 8 });
    const task = await vaeTrainingTask(vae, data, { batch: 4, reconstruction: 'l1', klWeight: 1e-3, decoderOnly: true });
    expect(task.step.params.length).toBeGreaterThan(0);
    expect(task.step.params.every((p) => isDecoderParameter(p.name))).toBe(true);
    expect(task.step.params.some((p) => p.name.startsWith('post_quant_conv.'))).toBe(true);
    const result = await train({ task, optimizer: new AdamW(task.step.params, { lr: 3e-3 }), lr: () => 3e-3, steps: 30, rng: new Generator(2) });
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(result.losses.slice(-5))).toBeLessThan(mean(result.losses.slice(0, 5)));
    for (const p of encoder) expect(p.value()).toEqual(before.get(p.name));
  });
});
