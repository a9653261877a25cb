// `nuri train textual-inversion | dreambooth | lora`: personalise a model from a few images. Each
// builds its task and runs it on the shared loop (progress, checkpoints in OUT/checkpoints,
// Ctrl-C, --resume), then writes what that method produces.

import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ImageFolderDataset } from '../data/folder.ts';
import { type LoraKeyStyle } from '../models/lora.ts';
import { StableDiffusion } from '../pipelines/stable-diffusion.ts';
import { LORA_WEIGHTS_FILE, dreamBoothTask, ensureClassImages, exportDreamBooth } from '../training/dreambooth.ts';
import { loraTrainingTask } from '../training/lora-training.ts';
import { defaultResolution, saveLearnedEmbeds, textualInversionTask } from '../training/textual-inversion.ts';
import { integer, number, oneOf } from './options.ts';
import { progressBar } from './shared.ts';
import { type TrainFlags, loadImages, mustExist, runTraining, trainingOptions } from './train-run.ts';

/** Adds the personalisation subcommands to `nuri train`. */
export function registerPersonalisation(train: Command): void {
  registerTextualInversion(train);
  registerDreamBooth(train);
  registerLora(train);
}

interface ModelFlags extends TrainFlags {
  model: string;
}

function loadModel(flags: ModelFlags): StableDiffusion {
  mustExist(flags.model, '--model');
  const sd = StableDiffusion.load(flags.model);
  for (const warning of sd.components.warnings) console.error(`warning: ${warning}`);
  return sd;
}

// ─── Textual Inversion ─────────────────────────────────────────────────────────────────────────

interface TextualInversionFlags extends ModelFlags {
  token: string;
  initToken: string;
  learnable: 'object' | 'style';
}

function registerTextualInversion(parent: Command): void {
  const command = parent
    .command('textual-inversion')
    .description('learn a new word for a subject or style from a few images (one new embedding row; the model is unchanged)')
    .requiredOption('--model <path>', 'diffusers folder or single-file checkpoint')
    .requiredOption('--token <token>', 'the new word, e.g. "<cat-toy>"')
    .requiredOption('--init-token <word>', 'a one-token word the new word starts from, e.g. "toy"')
    .option('--learnable <what>', 'prompt templates: object or style', oneOf(['object', 'style'] as const), 'object');
  trainingOptions(command, { lr: 5e-4, batch: 1, steps: 3000 }).action((flags: TextualInversionFlags) => trainTextualInversion(flags));
}

async function trainTextualInversion(flags: TextualInversionFlags): Promise<void> {
  const sd = loadModel(flags);
  const resolution = flags.resolution ?? defaultResolution(sd.components);
  const data = await loadImages(flags, resolution, false);
  const batch = flags.batch ?? 1;
  const { task, placeholder } = await textualInversionTask(sd, data, { token: flags.token, initToken: flags.initToken, batch, learnable: flags.learnable, flip: flags.flip });
  const config = { command: 'train textual-inversion', ...flags, batch, resolution };
  const result = await runTraining({ ...flags, batch }, { label: 'train textual-inversion', task, defaultLr: 5e-4, config });
  if (result.interrupted) return;
  console.error(`wrote ${saveLearnedEmbeds(flags.out, placeholder)} (use it with: nuri generate --embedding FILE "… ${flags.token} …")`);
}

// ─── DreamBooth ────────────────────────────────────────────────────────────────────────────────

interface DreamBoothFlags extends ModelFlags {
  instancePrompt: string;
  classPrompt?: string;
  classImages: number;
  classDir?: string;
  classSteps: number;
  priorLossWeight: number;
  trainTextEncoder?: boolean;
  loraRank?: number;
  loraAlpha?: number;
}

const DREAMBOOTH_LR = { full: 5e-6, lora: 1e-4 };

function registerDreamBooth(parent: Command): void {
  const command = parent
    .command('dreambooth')
    .description('fine-tune on a few images of one subject named by a rare token, with class-prior preservation; a diffusers folder, or a LoRA file with --lora-rank')
    .requiredOption('--model <path>', 'diffusers folder (or a single-file checkpoint with --lora-rank)')
    .requiredOption('--instance-prompt <text>', 'the subject with its rare token, e.g. "a photo of sks dog"')
    .option('--class-prompt <text>', 'the class, e.g. "a photo of dog": turns on prior preservation')
    .option('--class-images <n>', 'class images wanted; missing ones are generated with the model first', integer(1), 100)
    .option('--class-dir <dir>', 'where class images are kept (default OUT/class-images)')
    .option('--class-steps <n>', 'sampling steps per generated class image', integer(1, 1000), 30)
    .option('--prior-loss-weight <λ>', 'weight of the class-prior loss', number(0), 1)
    .option('--train-text-encoder', 'also train the text encoder')
    .option('--lora-rank <r>', 'train LoRA adapters of this rank only; the output is a LoRA file for the base model', integer(1, 1024))
    .option('--lora-alpha <a>', 'LoRA alpha (default: the rank)', number(0));
  trainingOptions(command, { lr: DREAMBOOTH_LR.full, batch: 1, steps: 400 }).action((flags: DreamBoothFlags) => trainDreamBooth(flags));
}

async function trainDreamBooth(flags: DreamBoothFlags): Promise<void> {
  const lora = flags.loraRank !== undefined;
  if (!lora && !existsSync(join(flags.model, 'model_index.json'))) {
    throw new Error('a full DreamBooth fine-tune writes a diffusers folder and needs a diffusers-folder --model; pass --lora-rank to train a LoRA instead');
  }
  if (flags.loraAlpha !== undefined && !lora) throw new Error('--lora-alpha needs --lora-rank');
  const sd = loadModel(flags);
  const resolution = flags.resolution ?? defaultResolution(sd.components);
  const batch = flags.batch ?? 1;
  let classes: ImageFolderDataset | undefined;
  if (flags.classPrompt !== undefined) {
    const classDir = flags.classDir ?? join(flags.out, 'class-images');
    mkdirSync(classDir, { recursive: true });
    const bar = progressBar('class images', flags.classImages);
    const made = await ensureClassImages(sd, classDir, {
      prompt: flags.classPrompt,
      count: flags.classImages,
      resolution,
      steps: flags.classSteps,
      seed: flags.seed,
      onImage: (done) => bar.update(done),
    }).finally(() => bar.stop());
    if (made) console.error(`generated ${made} class image(s) in ${classDir}`);
    classes = await ImageFolderDataset.load(classDir, { resolution, onWarning: (m) => console.error(`warning: ${m}`) });
  }
  const instances = await loadImages(flags, resolution, false);
  const { task, network } = await dreamBoothTask(sd, instances, classes, {
    instancePrompt: flags.instancePrompt,
    classPrompt: flags.classPrompt,
    priorLossWeight: flags.priorLossWeight,
    batch,
    trainTextEncoder: flags.trainTextEncoder,
    lora: lora ? { rank: flags.loraRank!, alpha: flags.loraAlpha, seed: flags.seed } : undefined,
  });
  const config = { command: 'train dreambooth', ...flags, batch, resolution };
  const result = await runTraining({ ...flags, batch }, { label: 'train dreambooth', task, defaultLr: lora ? DREAMBOOTH_LR.lora : DREAMBOOTH_LR.full, config });
  if (result.interrupted) return;
  const output = exportDreamBooth(sd, flags.model, flags.out, { network, trainTextEncoder: flags.trainTextEncoder });
  console.error(`wrote ${output}${network ? ` (use it with: nuri generate --model ${flags.model} --lora ${output})` : ''}`);
}

// ─── LoRA ──────────────────────────────────────────────────────────────────────────────────────

interface LoraFlags extends ModelFlags {
  rank: number;
  alpha?: number;
  trainTextEncoder?: boolean;
  captionDropout: number;
  keyStyle: LoraKeyStyle;
}

function registerLora(parent: Command): void {
  const command = parent
    .command('lora')
    .description('LoRA fine-tuning on captioned images: low-rank adapters on the attention projections; writes a LoRA file')
    .requiredOption('--model <path>', 'diffusers folder or single-file checkpoint')
    .option('--rank <r>', 'adapter rank', integer(1, 1024), 4)
    .option('--alpha <a>', 'adapter alpha (default: the rank, i.e. a multiplier of 1)', number(0))
    .option('--train-text-encoder', "also adapt the text encoder's attention")
    .option('--caption-dropout <p>', 'probability of training with the empty caption', number(0, 1), 0)
    .option('--key-style <style>', 'tensor names in the file: diffusers (PEFT) or kohya', oneOf(['diffusers', 'kohya'] as const), 'diffusers');
  trainingOptions(command, { lr: 1e-4, batch: 1, steps: 1000 }).action((flags: LoraFlags) => trainLora(flags));
}

async function trainLora(flags: LoraFlags): Promise<void> {
  const sd = loadModel(flags);
  const resolution = flags.resolution ?? defaultResolution(sd.components);
  const data = await loadImages(flags, resolution, true);
  const batch = flags.batch ?? 1;
  const { task, network } = await loraTrainingTask(sd, data, {
    rank: flags.rank,
    alpha: flags.alpha,
    textEncoder: flags.trainTextEncoder,
    batch,
    flip: flags.flip,
    captionDropout: flags.captionDropout,
    seed: flags.seed,
  });
  const config = { command: 'train lora', ...flags, batch, resolution };
  const result = await runTraining({ ...flags, batch }, { label: 'train lora', task, defaultLr: 1e-4, config });
  if (result.interrupted) return;
  const output = join(flags.out, LORA_WEIGHTS_FILE);
  network.save(output, flags.keyStyle, { base_model: flags.model });
  console.error(`wrote ${output} (use it with: nuri generate --model ${flags.model} --lora ${output})`);
}
