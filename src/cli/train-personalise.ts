// `nuri train textual-inversion | dreambooth | lora`: personalise a model from a few images. The
// work is the library's (src/training/personalise-runs.ts); each command maps its flags onto it,
// shows progress, and says what it wrote.

import type { Command } from 'commander';
import type { LoraKeyStyle } from '../models/lora.ts';
import type { PipelineOptions } from '../pipelines/load-pipeline.ts';
import { PERSONALISE_DEFAULTS, trainDreamBooth, trainLora, trainTextualInversion } from '../training/personalise-runs.ts';
import { type LoadFlags, loadOptions, loadOptionsFrom } from './model-options.ts';
import { integer, number, oneOf } from './options.ts';
import { type TrainFlags, learningRate, mustExist, trainingOptions, withTrainingProgress } from './train-run.ts';

/** Adds the personalisation subcommands to `nuri train`. */
export function registerPersonalisation(train: Command): void {
  registerTextualInversion(train);
  registerDreamBooth(train);
  registerLora(train);
}

interface ModelFlags extends TrainFlags, LoadFlags {
  model: string;
}

/** The library options common to the three: the flags, the model and how to load it. */
function modelRun<F extends ModelFlags>(flags: F): F & { load: PipelineOptions } {
  mustExist(flags.model, '--model');
  return { ...flags, load: loadOptionsFrom(flags) };
}

// ─── Textual Inversion ─────────────────────────────────────────────────────────────────────────

interface TextualInversionFlags extends ModelFlags {
  token: string;
  initToken: string;
  learnable: 'object' | 'style';
}

function registerTextualInversion(parent: Command): void {
  const { lr, steps } = PERSONALISE_DEFAULTS.textualInversion;
  const command = parent
    .command('textual-inversion')
    .description('learn a new word for a subject or style from a few images (one new embedding row; the model is unchanged)')
    .requiredOption('--model <path>', 'diffusers folder or single-file checkpoint')
    .requiredOption('--token <token>', 'the new word, e.g. "<cat-toy>"')
    .requiredOption('--init-token <word>', 'a one-token word the new word starts from, e.g. "toy"')
    .option('--learnable <what>', 'prompt templates: object or style', oneOf(['object', 'style'] as const), 'object');
  trainingOptions(loadOptions(command), { lr, batch: 1, steps }).action(async (flags: TextualInversionFlags) => {
    const { files } = await withTrainingProgress('train textual-inversion', flags, (o) => trainTextualInversion({ ...modelRun(flags), ...o }));
    console.error(`wrote ${files[0]} (use it with: nuri generate --embedding FILE "… ${flags.token} …")`);
  });
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

function registerDreamBooth(parent: Command): void {
  const d = PERSONALISE_DEFAULTS.dreamBooth;
  const command = parent
    .command('dreambooth')
    .description('fine-tune on a few images of one subject named by a rare token, with class-prior preservation; a diffusers folder, or a LoRA file with --lora-rank')
    .requiredOption('--model <path>', 'diffusers folder (or a single-file checkpoint with --lora-rank)')
    .requiredOption('--instance-prompt <text>', 'the subject with its rare token, e.g. "a photo of sks dog"')
    .option('--class-prompt <text>', 'the class, e.g. "a photo of dog": turns on prior preservation')
    .option('--class-images <n>', 'class images wanted; missing ones are generated with the model first', integer(1), d.classImages)
    .option('--class-dir <dir>', 'where class images are kept (default OUT/class-images)')
    .option('--class-steps <n>', 'sampling steps per generated class image', integer(1, 1000), d.classSteps)
    .option('--prior-loss-weight <λ>', 'weight of the class-prior loss', number(0), d.priorLossWeight)
    .option('--train-text-encoder', 'also train the text encoder')
    .option('--lora-rank <r>', 'train LoRA adapters of this rank only; the output is a LoRA file for the base model', integer(1, 1024))
    .option('--lora-alpha <a>', 'LoRA alpha (default: the rank)', number(0));
  trainingOptions(loadOptions(command), { lr: d.lr, batch: 1, steps: d.steps, lrHelp: `default ${learningRate(d.lr)}; ${learningRate(d.loraLr)} with --lora-rank` }).action(async (flags: DreamBoothFlags) => {
    const { files } = await withTrainingProgress('train dreambooth', flags, (o) => trainDreamBooth({ ...modelRun(flags), ...o }));
    console.error(`wrote ${files[0]}${flags.loraRank !== undefined ? ` (use it with: nuri generate --model ${flags.model} --lora ${files[0]})` : ''}`);
  });
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
  const d = PERSONALISE_DEFAULTS.lora;
  const command = parent
    .command('lora')
    .description('LoRA fine-tuning on captioned images: low-rank adapters on the attention projections; writes a LoRA file')
    .requiredOption('--model <path>', 'diffusers folder or single-file checkpoint')
    .option('--rank <r>', 'adapter rank', integer(1, 1024), d.rank)
    .option('--alpha <a>', 'adapter alpha (default: the rank, i.e. a multiplier of 1)', number(0))
    .option('--train-text-encoder', "also adapt the text encoder's attention")
    .option('--caption-dropout <p>', 'probability of training with the empty caption', number(0, 1), d.captionDropout)
    .option('--key-style <style>', 'tensor names in the file: diffusers (PEFT) or kohya', oneOf(['diffusers', 'kohya'] as const), d.keyStyle);
  trainingOptions(loadOptions(command), { lr: d.lr, batch: 1, steps: d.steps }).action(async (flags: LoraFlags) => {
    const { files } = await withTrainingProgress('train lora', flags, (o) => trainLora({ ...modelRun(flags), ...o }));
    console.error(`wrote ${files[0]} (use it with: nuri generate --model ${flags.model} --lora ${files[0]})`);
  });
}
