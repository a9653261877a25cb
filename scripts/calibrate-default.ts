// Short trials behind the default model's shape (recipes/default/README.md records the results):
//
//   npx tsx scripts/calibrate-default.ts vae [--steps 100]   VAE downsampling factor 4 vs 8: the same
//        widths trained for the same steps from scratch on the emoji set; seconds per step and the
//        PSNR of mean reconstructions of the held-out emoji
//   npx tsx scripts/calibrate-default.ts unet                seconds per UNet training step (forward,
//        backward, AdamW) at the latent size each VAE factor gives, with recipes/default/unet.json
//        (or --config FILE at --latent N)
//   npx tsx scripts/calibrate-default.ts psnr --checkpoint DIR --config vae.json --resolution 64
//        held-out PSNR of a VAE checkpoint mid-training (a `nuri train vae` checkpoint folder)
//
// Each trial prints one JSON line.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AdamW, Generator, Tensor, readSafetensors } from '../src/engine/index.ts';
import { loadEmojiDataset } from '../src/data/emoji-dataset.ts';
import { type ConfigJson as Json } from '../src/models/checkpoint/config-file.ts';
import { UNet2DConditionModel } from '../src/models/unet.ts';
import { parseUNetConfig } from '../src/models/checkpoint/unet-config.ts';
import { AutoencoderKL, vaeDownscale } from '../src/models/vae.ts';
import { parseVaeConfig } from '../src/models/checkpoint/vae-config.ts';
import { createScheduler } from '../src/schedulers/index.ts';
import { compileTrainStep, diffusionFeeds, diffusionInputs, diffusionLoss, drawNoising, train } from '../src/training/index.ts';
import { reconstructionQuality } from '../src/training/vae-quality.ts';
import { vaeTrainingTask } from '../src/training/vae-training.ts';

const RECIPE = join(import.meta.dirname, '..', 'recipes', 'default');
const readJson = (name: string) => JSON.parse(readFileSync(join(RECIPE, name), 'utf8')) as Json;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    steps: { type: 'string', default: '100' },
    batch: { type: 'string', default: '16' },
    config: { type: 'string', default: join(RECIPE, 'unet.json') },
    latent: { type: 'string' },
    checkpoint: { type: 'string' },
    resolution: { type: 'string', default: '64' },
  },
});
const steps = Number(values.steps);
const batch = Number(values.batch);

/** The recipe's VAE with its last level dropped or repeated, so only the factor differs. */
function vaeWithFactor(factor: 4 | 8): Json {
  const base = readJson('vae.json');
  const channels = base.block_out_channels as number[];
  const levels = Math.log2(factor) + 1;
  const widths = Array.from({ length: levels }, (_, i) => channels[Math.min(i, channels.length - 1)]);
  return { ...base, block_out_channels: widths, down_block_types: widths.map(() => 'DownEncoderBlock2D'), up_block_types: widths.map(() => 'UpDecoderBlock2D') };
}

async function vaeTrial(factor: 4 | 8, resolution: number): Promise<void> {
  const vae = new AutoencoderKL(parseVaeConfig(vaeWithFactor(factor)));
  vae.init(new Generator(0));
  const data = await loadEmojiDataset({ size: resolution, includeSkinTones: false });
  const heldOut = await loadEmojiDataset({ size: resolution, includeSkinTones: false, split: 'heldout' });
  const task = await vaeTrainingTask(vae, data, { batch, reconstruction: 'l1', klWeight: 1e-6 });
  const began = performance.now();
  const result = await train({ task, optimizer: new AdamW(task.step.params, { lr: 1e-3 }), lr: () => 1e-3, steps, rng: new Generator(0) });
  const secondsPerStep = (performance.now() - began) / 1000 / steps;
  const quality = await reconstructionQuality(vae, heldOut);
  const params = task.step.params.reduce((a, p) => a + p.size, 0);
  const finalLoss = result.losses.slice(-10).reduce((a, b) => a + b, 0) / Math.min(10, result.losses.length);
  console.log(JSON.stringify({ trial: 'vae', factor, resolution, latent: resolution / vaeDownscale(vae.config), params, steps, batch, secondsPerStep: +secondsPerStep.toFixed(3), finalLoss: +finalLoss.toFixed(4), heldOutPsnr: +quality.psnr.toFixed(2), heldOutImages: quality.images }));
}

async function unetTrial(latent: number): Promise<void> {
  const config = parseUNetConfig({ ...(JSON.parse(readFileSync(values.config!, 'utf8')) as Json), sample_size: latent });
  const unet = new UNet2DConditionModel(config);
  unet.init(new Generator(0));
  const clip = readJson('clip.json');
  const width = (clip.text_config as Json).hidden_size as number;
  const tokens = 77;
  const inputs = diffusionInputs(batch, [config.in_channels, latent, latent]);
  const context = Tensor.input('encoder_hidden_states', [batch, tokens, width]);
  const { loss } = diffusionLoss(unet, inputs, context);
  const step = await compileTrainStep({ inputs: [...Object.values(inputs), context], loss, params: unet.parameters() });
  const optimizer = new AdamW(step.params, { lr: 1e-4 });
  const rng = new Generator(0);
  const alphasCumprod = createScheduler('ddpm', readJson('scheduler_config.json')).alphasCumprod;
  const size = config.in_channels * latent * latent;
  const feeds = () => {
    const { timesteps, noise } = drawNoising(rng, batch, size, alphasCumprod.length);
    return {
      ...diffusionFeeds(alphasCumprod, rng.randn(batch * size), [batch, config.in_channels, latent, latent], noise, timesteps),
      encoder_hidden_states: { data: rng.randn(batch * tokens * width), shape: [batch, tokens, width] },
    };
  };
  const times: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    optimizer.step((await step.run(feeds())).grads, 1e-4);
    const c1 = process.cpuUsage(c0);
    if (i > 0) {
      times.push((performance.now() - t0) / 1000);
      cpu.push((c1.user + c1.system) / 1e6);
    }
  }
  // CPU seconds (all threads) depend far less on other processes' load than wall seconds do.
  times.sort((a, b) => a - b);
  cpu.sort((a, b) => a - b);
  const params = step.params.reduce((a, p) => a + p.size, 0);
  console.log(JSON.stringify({ trial: 'unet', config: values.config, latent, batch, params, secondsPerStep: +times[times.length >> 1].toFixed(3), cpuSecondsPerStep: +cpu[cpu.length >> 1].toFixed(3) }));
}

async function checkpointPsnr(checkpoint: string): Promise<void> {
  const vae = new AutoencoderKL(parseVaeConfig(JSON.parse(readFileSync(values.config!, 'utf8')) as Json));
  const weights = readSafetensors(join(checkpoint, 'weights.safetensors'));
  for (const p of vae.parameters()) {
    const t = weights.get(p.name);
    if (!t) throw new Error(`${checkpoint}: no ${p.name}; is --config the VAE's config?`);
    p.setValue(t.data as Float32Array);
  }
  const resolution = Number(values.resolution);
  const heldOut = await loadEmojiDataset({ size: resolution, includeSkinTones: false, split: 'heldout' });
  const quality = await reconstructionQuality(vae, heldOut);
  console.log(JSON.stringify({ trial: 'psnr', checkpoint, resolution, heldOutPsnr: +quality.psnr.toFixed(2), heldOutImages: quality.images }));
}

const which = positionals[0];
if (which === 'vae') {
  await vaeTrial(4, 32);
  await vaeTrial(8, 32);
} else if (which === 'unet') {
  for (const latent of values.latent ? [Number(values.latent)] : [4, 8, 16]) await unetTrial(latent);
} else if (which === 'psnr' && values.checkpoint) {
  await checkpointPsnr(values.checkpoint);
} else {
  throw new Error('usage: calibrate-default.ts vae|unet [--steps N] [--batch B] [--config FILE --latent N] | psnr --checkpoint DIR --config FILE [--resolution R]');
}
