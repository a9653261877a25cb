// DreamBooth-LoRA on SDXL (tiny-sdxl): the step graph runs both text towers (penultimate states,
// pooled text_embeds) and the UNet with its added conditions; LoRA training lowers the loss on a
// fixed batch, and `nuri train dreambooth --lora-rank` writes a LoRA file that loads back onto SDXL.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { registerPersonalisation } from '../../src/cli/train-personalise.ts';
import { registerTrain } from '../../src/cli/train.ts';
import { AdamW, Generator } from '../../src/engine/index.ts';
import { createImage } from '../../src/io/image.ts';
import { writePng } from '../../src/io/png.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { LoraNetwork, loadLoraFile } from '../../src/models/lora.ts';
import { LORA_WEIGHTS_FILE, compileDreamBoothStep } from '../../src/training/dreambooth.ts';
import { conditionedFeeds, noiseSchedule, sdxlTrainingFeeds, tokenIdsFeed } from '../../src/training/fine-tune.ts';
import { TINY_SDXL } from '../fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'nuri-dreambooth-sdxl-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('DreamBooth-LoRA on SDXL', () => {
  it('LoRA steps lower the loss on a fixed batch (the graph the CLI run below reuses: batch 1, 64 px)', async () => {
    const c = loadStableDiffusion(TINY_SDXL);
    const network = LoraNetwork.create(c, { rank: 2 }, new Generator(0));
    const schedule = noiseSchedule(c);
    const step = await compileDreamBoothStep(c, network.parameters(), { instanceBatch: 1, latentShape: [4, 8, 8], schedule });
    const prompts = ['a photo of sks dog'];
    const latents = new Generator(5).randn(4 * 8 * 8);
    const feeds = conditionedFeeds(schedule, latents, [1, 4, 8, 8], tokenIdsFeed(c.tokenizer, prompts), new Generator(1), sdxlTrainingFeeds(c, prompts, [64, 64]));
    expect(feeds.time_ids).toEqual({ data: Float32Array.of(64, 64, 0, 0, 64, 64), shape: [1, 6] });
    const optimizer = new AdamW(network.parameters(), { lr: 3e-2 });
    const losses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const out = await step.run(feeds);
      losses.push(out.loss);
      optimizer.step(out.grads);
    }
    console.log(`sdxl dreambooth-lora losses: ${losses.map((l) => l.toFixed(4)).join(' ')}`);
    expect(losses[5]!).toBeLessThan(losses[0]! * 0.95);
  });

  it('nuri train dreambooth --lora-rank writes a UNet LoRA that loads onto SDXL; a full fine-tune is refused', async () => {
    const images = join(dir, 'instances');
    mkdirSync(images, { recursive: true });
    for (let i = 0; i < 2; i++) await writePng(join(images, `dog-${i}.png`), createImage(64, 64, [0.2, 0.5, 0.2 + 0.3 * i]));
    const nuri = async (args: string[]) => {
      const program = new Command('nuri').exitOverride();
      registerPersonalisation(registerTrain(program));
      await program.parseAsync(args, { from: 'user' });
    };
    const common = ['train', 'dreambooth', '--model', TINY_SDXL, '--images', images, '--instance-prompt', 'a photo of sks dog', '--resolution', '64', '--steps', '2', '--lr', '1e-2'];
    const out = join(dir, 'lora');
    await nuri([...common, '--lora-rank', '2', '--out', out]);
    const read = loadLoraFile(join(out, LORA_WEIGHTS_FILE), loadStableDiffusion(TINY_SDXL));
    expect(read.unmatched).toEqual([]);
    expect(new Set(read.layers.map((l) => l.component))).toEqual(new Set(['unet']));
    expect(read.layers.some((l) => l.module.startsWith('mid_block.attentions.0.transformer_blocks.1.'))).toBe(true);
    expect(read.layers.some((l) => l.up.some((v) => v !== 0))).toBe(true);
    await expect(nuri([...common, '--out', join(dir, 'full')])).rejects.toThrow(/DreamBooth on SDXL .* trains a UNet LoRA only/);
  });
});
