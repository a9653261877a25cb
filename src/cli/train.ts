// `nuri train vae|clip|unet`: train the three models of a latent diffusion system on a folder of
// captioned images. Other training methods (DreamBooth, Textual Inversion, LoRA) add their
// subcommands to the `train` command that `registerTrain` returns.

import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { Generator } from '../engine/index.ts';
import { imageFromTensor } from '../io/image.ts';
import { writePng } from '../io/png.ts';
import { ClipModel } from '../models/clip.ts';
import { parseClipConfig } from '../models/checkpoint/clip-config.ts';
import { loadClipModel } from '../models/checkpoint/components.ts';
import { type ConfigJson as Json, readConfigJson } from '../models/checkpoint/config-file.ts';
import { loadStableDiffusion } from '../models/load.ts';
import { VaeRunner } from '../models/vae-runner.ts';
import { AutoencoderKL, vaeDownscale } from '../models/vae.ts';
import { loadVae } from '../models/checkpoint/components.ts';
import { parseVaeConfig } from '../models/checkpoint/vae-config.ts';
import { generate } from '../pipelines/generate.ts';
import { StableDiffusion } from '../pipelines/stable-diffusion.ts';
import { ClipTokenizer } from '../tokenizers/clip.ts';
import { clipRetrievalAccuracy, clipTrainingTask } from '../training/clip-training.ts';
import { EmaWeights, type ReconstructionLoss } from '../training/index.ts';
import { WEIGHTS_FILE, exportPipeline, writeComponent } from '../training/export.ts';
import { unetTrainingTask } from '../training/unet-training.ts';
import { vaeTrainingTask } from '../training/vae-training.ts';
import { collect, integer, number, oneOf } from './options.ts';
import { bundledTokenizer } from './shared.ts';
import { type TrainFlags, loadImages, mustExist, runTraining, trainingOptions } from './train-run.ts';

/** Registers `nuri train` with its vae, clip and unet subcommands; returns it so others can add more. */
export function registerTrain(program: Command): Command {
  const trainCommand = program.command('train').description('train or fine-tune models on a folder of captioned images');
  registerVae(trainCommand);
  registerClip(trainCommand);
  registerUNet(trainCommand);
  return trainCommand;
}

function readJson(path: string): Json {
  mustExist(path, 'config');
  return JSON.parse(readFileSync(path, 'utf8')) as Json;
}

const isPipeline = (path: string) => existsSync(join(path, 'model_index.json'));

// ─── VAE ────────────────────────────────────────────────────────────────────────────────────────

interface VaeFlags extends TrainFlags {
  model?: string;
  config?: string;
  klWeight: number;
  reconstruction: ReconstructionLoss;
  decoderOnly?: boolean;
}

function registerVae(parent: Command): void {
  const command = parent
    .command('vae')
    .description('train an AutoencoderKL (reconstruction + KL); from --model (a pipeline or vae/ folder) or from scratch with --config')
    .option('--model <dir>', 'diffusers pipeline folder (its vae/ is trained) or a vae folder')
    .option('--config <file.json>', 'diffusers AutoencoderKL config.json for a model trained from scratch')
    .option('--kl-weight <w>', 'weight of the KL term', number(0), 1e-6)
    .option('--reconstruction <loss>', 'reconstruction error: l1 or l2', oneOf(['l1', 'l2'] as const), 'l1')
    .option('--decoder-only', 'train only the decoder (encoder frozen, so latents and any UNet trained on them stay valid); needs --model');
  trainingOptions(command, { lr: 1e-4, batch: 4 }).action((flags: VaeFlags) => trainVae(flags));
}

async function trainVae(flags: VaeFlags): Promise<void> {
  if (!flags.model === !flags.config) throw new Error('give exactly one of --model (fine-tune) or --config (from scratch)');
  if (flags.decoderOnly && !flags.model) throw new Error('--decoder-only fine-tunes a trained VAE: give --model');
  const vaeDir = flags.model && (isPipeline(flags.model) ? join(flags.model, 'vae') : flags.model);
  const rawConfig = readJson(vaeDir ? join(vaeDir, 'config.json') : flags.config!);
  let vae: AutoencoderKL;
  if (vaeDir) vae = loadVae(vaeDir);
  else {
    vae = new AutoencoderKL(parseVaeConfig(rawConfig));
    vae.init(new Generator(flags.seed));
  }
  const resolution = flags.resolution ?? vae.config.sample_size;
  if (resolution % vaeDownscale(vae.config)) throw new Error(`--resolution must be a multiple of ${vaeDownscale(vae.config)}`);
  const data = await loadImages(flags, resolution, false);
  const batch = flags.batch ?? 4;
  const task = await vaeTrainingTask(vae, data, { batch, flip: flags.flip, reconstruction: flags.reconstruction, klWeight: flags.klWeight, decoderOnly: flags.decoderOnly });
  const shown = data.batch(Array.from({ length: Math.min(4, data.length) }, (_, i) => i));
  const validate = async (step: number) => {
    // Reconstructions of the first images through the posterior mean.
    const runner = new VaeRunner(vae, {}, task.step.params);
    const enc = await runner.encodeImage(shown.pixels, shown.shape);
    const dec = await runner.decodeRaw(enc.mean, enc.shape);
    const dir = join(flags.out, 'validation');
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < shown.shape[0]; i++) await writePng(join(dir, `step-${step}-${i + 1}.png`), imageFromTensor(dec.data, i, dec.shape, '-1..1'));
  };
  const config = { command: 'train vae', ...flags, batch };
  await runTraining({ ...flags, batch }, { label: 'train vae', task, defaultLr: 1e-4, validate, config });
  const component = { config: rawConfig, params: vae.parameters(), weightsFile: WEIGHTS_FILE.diffusers };
  if (flags.model && isPipeline(flags.model)) exportPipeline(flags.model, flags.out, { vae: component });
  else writeComponent(flags.out, component);
  console.error(`wrote ${flags.out}`);
}

// ─── CLIP ───────────────────────────────────────────────────────────────────────────────────────

interface ClipFlags extends TrainFlags {
  model?: string;
  config?: string;
  tokenizer?: string;
}

function registerClip(parent: Command): void {
  const command = parent
    .command('clip')
    .description('train CLIP (text and vision towers, contrastive loss with a learned temperature); from --model or from scratch with --config')
    .option('--model <dir>', 'transformers CLIPModel folder (config.json + model.safetensors)')
    .option('--config <file.json>', 'CLIPModel config.json (text_config, vision_config, projection_dim) for a model trained from scratch')
    .option('--tokenizer <dir>', 'vocab.json + merges.txt (default: the model folder, else the bundled tokenizer)');
  trainingOptions(command, { lr: 5e-4, batch: 8 }).action((flags: ClipFlags) => trainClip(flags));
}

function tokenizerDir(flags: ClipFlags): string {
  if (flags.tokenizer) return flags.tokenizer;
  if (flags.model && existsSync(join(flags.model, 'vocab.json'))) return flags.model;
  return bundledTokenizer;
}

async function trainClip(flags: ClipFlags): Promise<void> {
  if (!flags.model === !flags.config) throw new Error('give exactly one of --model (fine-tune) or --config (from scratch)');
  const rawConfig = flags.model ? readConfigJson(flags.model) : readJson(flags.config!);
  let model: ClipModel;
  if (flags.model) model = loadClipModel(flags.model);
  else {
    model = new ClipModel(parseClipConfig(rawConfig));
    model.init(new Generator(flags.seed));
  }
  const size = model.config.vision_config.image_size;
  if (flags.resolution !== undefined && flags.resolution !== size) throw new Error(`--resolution must be the vision tower's image_size, ${size}`);
  const tokDir = tokenizerDir(flags);
  const tokenizer = ClipTokenizer.fromFolder(tokDir);
  const data = await loadImages(flags, size, true);
  const batch = flags.batch ?? 8;
  const task = await clipTrainingTask(model, tokenizer, data, { batch, flip: flags.flip });
  const validate = async (step: number) => {
    const accuracy = await clipRetrievalAccuracy(model, tokenizer, data);
    console.error(`\nstep ${step}: image→text retrieval accuracy ${(100 * accuracy).toFixed(1)}% over ${Math.min(64, data.length)} images`);
  };
  await runTraining({ ...flags, batch }, { label: 'train clip', task, defaultLr: 5e-4, validate, config: { command: 'train clip', ...flags, batch } });

  // The CLIPModel, plus its text tower alone in the text_encoder/ + tokenizer/ layout a pipeline uses.
  const params = model.parameters();
  writeComponent(flags.out, { config: rawConfig, params, weightsFile: WEIGHTS_FILE.transformers });
  const textConfig = { architectures: ['CLIPTextModel'], model_type: 'clip_text_model', ...((rawConfig.text_config ?? {}) as Json) };
  writeComponent(join(flags.out, 'text_encoder'), { config: textConfig, params: params.filter((p) => p.name.startsWith('text_model.')), weightsFile: WEIGHTS_FILE.transformers });
  mkdirSync(join(flags.out, 'tokenizer'), { recursive: true });
  for (const name of ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json']) {
    if (existsSync(join(tokDir, name))) {
      copyFileSync(join(tokDir, name), join(flags.out, 'tokenizer', name));
      copyFileSync(join(tokDir, name), join(flags.out, name));
    }
  }
  console.error(`wrote ${flags.out}`);
}

// ─── UNet ───────────────────────────────────────────────────────────────────────────────────────

interface UNetFlags extends TrainFlags {
  model: string;
  captionDropout: number;
  paddingDropout: number;
  paddingDropoutFrom: number;
  wordIsolation: number;
  wordIsolationFrom: number;
  emaDecay?: number;
  snrGamma?: number;
  grounding?: number;
  validationPrompt?: string[];
  validationSteps: number;
}

function registerUNet(parent: Command): void {
  const command = parent
    .command('unet')
    .description("train a pipeline's UNet with the DDPM loss (VAE and text encoder frozen); writes a whole pipeline folder")
    .requiredOption('--model <dir>', 'diffusers pipeline folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/)')
    .option('--caption-dropout <p>', 'probability of training with the empty caption (needed for classifier-free guidance)', number(0, 1), 0.1)
    .option('--padding-dropout <p>', "probability of training a caption with its end-of-text states (EOS and the padding) replaced by the empty prompt's, so the UNet reads the words", number(0, 1), 0)
    .option('--padding-dropout-from <step>', 'the step from which --padding-dropout applies', integer(0), 0)
    .option('--word-isolation <p>', 'probability of training a caption with each word encoded as if the words before it were absent (and its end-of-text states emptied), so each word carries its own meaning', number(0, 1), 0)
    .option('--word-isolation-from <step>', 'the step from which --word-isolation applies', integer(0), 0)
    .option('--snr-gamma <g>', 'min-SNR-γ loss weighting (Hang et al. 2023; 5 in the paper): noisier timesteps weigh more', number(0))
    .option('--grounding <w>', "weight of a token-grounding loss (TokenCompose) pulling each caption word's cross-attention onto the object, for pictures on a white background", number(0))
    .option('--ema-decay <d>', 'keep an exponential moving average of the weights (e.g. 0.9999) and export it', number(0, 0.999999))
    .option('--validation-prompt <text>', 'prompt for validation images (repeatable; default: the first caption)', collect)
    .option('--validation-steps <n>', 'sampling steps for validation images', number(1, 1000), 20);
  trainingOptions(command, { lr: 1e-4, batch: 1 }).action((flags: UNetFlags) => trainUNet(flags));
}

async function trainUNet(flags: UNetFlags): Promise<void> {
  mustExist(flags.model, '--model');
  if (!statSync(flags.model).isDirectory() || !isPipeline(flags.model)) throw new Error('--model must be a diffusers pipeline folder (with model_index.json)');
  const components = loadStableDiffusion(flags.model);
  const { unet, vae } = components;
  const resolution = flags.resolution ?? unet.config.sample_size * vaeDownscale(vae.config);
  const data = await loadImages(flags, resolution, true);
  const batch = flags.batch ?? 1;
  const task = await unetTrainingTask(components, data, {
    batch,
    captionDropout: flags.captionDropout,
    paddingDropout: flags.paddingDropout,
    paddingDropoutFrom: flags.paddingDropoutFrom,
    wordIsolation: flags.wordIsolation,
    wordIsolationFrom: flags.wordIsolationFrom,
    flip: flags.flip,
    snrGamma: flags.snrGamma,
    grounding: flags.grounding,
  });
  const ema = flags.emaDecay ? new EmaWeights(task.step.params, flags.emaDecay) : undefined;
  const sd = new StableDiffusion(components);
  await sd.setTrainable(task.step.params); // validation samples feed the weights as they stand
  const prompts = flags.validationPrompt ?? [data.items[0].caption];
  const validate = async (step: number) => {
    const dir = join(flags.out, 'validation');
    mkdirSync(dir, { recursive: true });
    // Without caption dropout the UNet never learnt the unconditional prediction guidance needs.
    const guidance = flags.captionDropout > 0 ? undefined : 1;
    const { images } = await generate(sd, { prompts, steps: flags.validationSteps, guidance, seed: flags.seed, width: resolution, height: resolution });
    for (const [i, image] of images.entries()) await writePng(join(dir, `step-${step}-${i + 1}.png`), image, { text: { prompt: prompts[i] } });
  };
  const config = { command: 'train unet', ...flags, batch, resolution };
  await runTraining({ ...flags, batch }, { label: 'train unet', task, defaultLr: 1e-4, ema, validate, config });
  const unetConfig = readJson(join(flags.model, 'unet', 'config.json'));
  exportPipeline(flags.model, flags.out, { unet: { config: unetConfig, params: unet.parameters(), weightsFile: WEIGHTS_FILE.diffusers, values: ema?.values() } });
  console.error(`wrote ${flags.out}`);
}
