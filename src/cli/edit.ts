// `nuri edit`: Prompt-to-Prompt editing of a generated or a real picture from the command line.
// Writes the source and the edit side by side, labelled with their prompts.

import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { writeSafetensors } from '../engine/safetensors.ts';
import { checkLatentsFit, checkStepNoiseSteps } from '../io/latents-file.ts';
import { imageGrid } from '../io/grid.ts';
import { readImage } from '../io/image.ts';
import { formatParameters } from '../io/parameters.ts';
import { writePng } from '../io/png.ts';
import { type EditOptions, checkEdit, edit, editParameterFields } from '../pipelines/edit.ts';
import { makeSampler, samplerDefaults } from '../pipelines/generate.ts';
import type { CrossReplace } from '../pipelines/prompt-to-prompt.ts';
import { loadPipeline } from '../pipelines/load-pipeline.ts';
import { SCHEDULER_NAMES, type SchedulerName, defaultSchedulerFor } from '../schedulers/index.ts';
import { SAMPLER_LABELS } from '../schedulers/labels.ts';
import { type PromptFlags, type SamplerFlags, checkSamplerFlags, GUIDANCE_HELP, mustBeFolder, outputPng, promptFileOption, readLatents, readPrompt, samplerExtra, STEPS_HELP, timestepSpacingOption } from './inputs.ts';
import { interruptible } from './interrupt.ts';
import { checkVaeFlags, vaeOption } from './preview.ts';
import { type DeviceFlags, type LoadFlags, type PersonalisationFlags, applyPersonalisation, checkPersonalisationFiles, deviceOption, loadOptions, loadOptionsFrom, personalisationExtra, personalisationOptions } from './model-options.ts';
import { collect, imageSize, integer, keyValue, number, oneOf } from './options.ts';
import { type Progress, defaultModelPath, progressBar } from './shared.ts';

interface EditFlags extends LoadFlags, DeviceFlags, PersonalisationFlags, PromptFlags, SamplerFlags {
  model?: string;
  target?: string;
  refine?: boolean;
  crossReplace?: CrossReplace;
  selfReplace?: number;
  reweight?: [string, number][];
  reweightCarry?: boolean;
  localBlend?: string[];
  blendThreshold?: number;
  image?: string;
  nullTextSteps: number;
  latents?: string;
  saveLatents?: string;
  negativePrompt?: string;
  steps?: number;
  scheduler?: SchedulerName;
  guidance?: number;
  seed?: number;
  width?: number;
  height?: number;
  out?: string;
}

const fraction = number(0, 1);

/** `--cross-replace F` for every word, `--cross-replace WORD=F` for one word; repeatable. */
function crossReplaceEntry(value: string, previous: CrossReplace = {}): CrossReplace {
  const at = value.lastIndexOf('=');
  if (at < 0) return { ...previous, default: fraction(value) };
  if (at === 0) throw new InvalidArgumentError('expected F or WORD=F');
  return { ...previous, words: { ...previous.words, [value.slice(0, at)]: fraction(value.slice(at + 1)) } };
}

export function registerEdit(program: Command): void {
  const command = program
    .command('edit')
    .description('edit a picture by editing its prompt (Prompt-to-Prompt): swap, add or re-weight words')
    .option('--model <path>', 'diffusers folder or single-file .safetensors (default: the bundled model)');
  vaeOption(loadOptions(command)).option('--prompt <text>', 'the source prompt (describes --image when one is given)');
  promptFileOption(command)
    .option('--target <text>', 'the edited prompt (default: the source, for pure re-weighting)')
    .option('--refine', 'the target adds or removes words: align tokens instead of swapping words one for one')
    .option('--cross-replace <F|WORD=F>', 'fraction of the steps the edit follows the source\'s cross-attention, for all words or one (default 0.8)', crossReplaceEntry)
    .option('--self-replace <F>', 'fraction of the steps the edit takes the source\'s self-attention (default 0.4)', fraction)
    .option('--reweight <WORD=FACTOR>', 'scale the attention to a word of the target (1 = unchanged); repeatable', keyValue(number(-100, 100)))
    .option('--reweight-carry', "also scale what a re-weighted word left in the words after it (default: the model's nuri.json, else off)")
    .option('--no-reweight-carry', "re-weight the word's attention only, as the paper does")
    .option('--local-blend <word>', 'change only where this word is (a word of either prompt); repeatable', collect)
    .option('--blend-threshold <t>', 'local blend: fraction of the mask peak that counts as inside (default 0.3)', fraction)
    .option('--image <file>', 'edit this picture: inverted with the source prompt first (DDIM, then null-text)')
    .option('--null-text-steps <n>', 'null-text optimisation iterations per step (0: plain DDIM inversion)', integer(0, 100), 10)
    .option('--latents <file>', 'initial noise: safetensors tensor "latents" [1 or 2,4,H/f,W/f], optionally "step_noise" [S,1 or 2,4,H/f,W/f]')
    .option('--save-latents <file>', 'write the final latents as tensor "latents" [2,4,H/f,W/f] (source, edit)')
    .option('--negative-prompt <text>', 'what to steer away from')
    .option('--steps <n>', STEPS_HELP, integer(1, 1000))
    .option('--scheduler <name>', `sampler: ${SCHEDULER_NAMES.join(', ')} (default: the model's own, as for generate; ddim with --image)`, oneOf(SCHEDULER_NAMES));
  timestepSpacingOption(command)
    .option('--guidance <g>', GUIDANCE_HELP, number(0, 100))
    .option('--eta <e>', "DDIM's η: 0 is deterministic (DDIM only)", number(0, 1))
    .option('--seed <s>', 'random seed; random when omitted', integer(0, 2 ** 32 - 1))
    .option('--width <w>', 'image width, a multiple of 8', imageSize)
    .option('--height <h>', 'image height, a multiple of 8', imageSize);
  personalisationOptions(command);
  deviceOption(command)
    .option('--out <file.png>', 'output PNG: source and edit side by side')
    .action(async (flags: EditFlags) => {
      await interruptible((signal) => runEdit(flags, signal));
    });
}

async function runEdit(flags: EditFlags, signal: AbortSignal): Promise<void> {
  // Everything the user got wrong is reported before any model runs or anything is written.
  const prompt = readPrompt(flags);
  if (prompt === undefined) throw new Error('no prompt: nuri edit --prompt "a cat riding a bike" --target "a dog riding a bike" --out edit.png');
  if (flags.out === undefined) throw new Error('--out FILE.png is required');
  const out = outputPng(flags.out);
  if (flags.scheduler) checkSamplerFlags(flags, flags.scheduler);
  checkPersonalisationFiles(flags);
  checkVaeFlags(flags);
  if (flags.saveLatents) mustBeFolder(dirname(resolve(flags.saveLatents)), '--save-latents');
  if (flags.image && !existsSync(flags.image)) throw new Error(`--image: no such file ${flags.image}`);
  if (flags.image && flags.latents) throw new Error('--image and --latents cannot be combined');
  // Inverting a picture (DDIM inversion, then null-text) retraces DDIM's own steps: editing it needs DDIM.
  if (flags.image && flags.scheduler && flags.scheduler !== 'ddim') throw new Error(`--image needs --scheduler ddim (the picture's inversion is DDIM's, and null-text inversion tunes for DDIM's steps), not ${flags.scheduler}`);
  if (flags.blendThreshold !== undefined && !flags.localBlend) throw new Error('--blend-threshold needs --local-blend');
  const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 32);
  const given = flags.latents ? readLatents(flags.latents, 2) : undefined;

  // Loading reads configs only; the default size and the latent grid (H/f × W/f) are the model's.
  const sd = await loadPipeline(flags.model ?? defaultModelPath(), loadOptionsFrom(flags));
  // Like generate, the model's own sampler unless one is named.
  const scheduler = flags.scheduler ?? (flags.image ? 'ddim' : defaultSchedulerFor(sd.components.schedulerConfig));
  checkSamplerFlags(flags, scheduler);
  const { steps, guidance } = samplerDefaults(sd, { ...flags, scheduler });
  const f = sd.vaeScaleFactor;
  let { width, height } = flags;
  let latents: Float32Array | undefined;
  if (given) {
    checkLatentsFit(flags.latents!, given, { channels: sd.latentChannels });
    const [, , h, w] = given.shape;
    if ((width ?? w * f) !== w * f || (height ?? h * f) !== h * f) {
      throw new Error(`--latents ${flags.latents} has shape [${given.shape.join(', ')}], which does not fit --width ${width} --height ${height}`);
    }
    [width, height, latents] = [w * f, h * f, given.data];
    checkStepNoiseSteps(flags.latents!, given, makeSampler(sd, { ...flags, scheduler, steps }).scheduler.timesteps.length, scheduler);
  }
  width ??= sd.defaultSize;
  height ??= sd.defaultSize;
  const personal = await applyPersonalisation(sd, flags);
  const expand = (text: string | undefined) => (text === undefined ? undefined : personal.expandPrompt(text));
  const options: EditOptions = {
    source: personal.expandPrompt(prompt),
    target: expand(flags.target),
    refine: flags.refine,
    crossReplace: flags.crossReplace,
    selfReplace: flags.selfReplace,
    reweight: flags.reweight && Object.fromEntries(flags.reweight),
    reweightCarry: flags.reweightCarry,
    localBlend: flags.localBlend && { words: flags.localBlend, threshold: flags.blendThreshold },
    nullText: flags.nullTextSteps > 0 && { innerSteps: flags.nullTextSteps },
    latents,
    stepNoise: given?.stepNoise,
    negativePrompt: expand(flags.negativePrompt),
    steps,
    scheduler,
    timestepSpacing: flags.timestepSpacing,
    guidance,
    eta: flags.eta,
    seed,
    width,
    height,
    clipSkip: flags.clipSkip,
    promptSyntax: flags.promptSyntax,
  };
  const plan = checkEdit(sd, options);
  const image = flags.image ? await readImage(flags.image, { width, height }) : undefined;

  const inversionBar = image && progressBar('inverting', 2 * steps);
  let bar: Progress | undefined;
  const result = await edit(sd, {
    ...options,
    image,
    signal,
    onInversionStep: (p) => inversionBar?.update(p.phase === 'ddim' ? p.step : steps + p.step),
    onProgress: (p) => {
      if (!bar) {
        inversionBar?.stop();
        bar = progressBar('editing', steps);
      }
      bar.update(p.step);
    },
  }).finally(() => {
    inversionBar?.stop();
    bar?.stop();
  });

  // A re-weight keeps the words: the edit's label says what changed.
  const weights = plan.reweighted.filter((w) => w.factor !== 1).map((w) => `${w.word} ×${w.factor}`);
  const labels = [plan.source, weights.length ? `${plan.target} (${weights.join(', ')})` : plan.target];
  // Prompts are long next to small pictures: shrink the captions to fit (≈ 0.55 em per character).
  const fontSize = Math.max(8, Math.min(14, Math.floor(width / (0.55 * Math.max(...labels.map((l) => l.length))))));
  const grid = await imageGrid(result.images, { columns: 2, padding: 4, labels, fontSize });
  const parameters = formatParameters({
    prompt: plan.source,
    negativePrompt: flags.negativePrompt,
    steps,
    sampler: SAMPLER_LABELS[scheduler],
    guidance,
    // Given latents, or a picture inverted deterministically, leave the seed nothing to draw.
    seed: given || (flags.image && !flags.eta) ? undefined : seed,
    width,
    height,
    model: sd.name,
    dtype: flags.dtype,
    extra: { ...editParameterFields(options, result), ...(flags.image ? { 'Null-text steps': flags.nullTextSteps } : {}), ...samplerExtra(flags), ...personalisationExtra(flags, personal) },
  });
  await writePng(out, grid, { parameters });
  if (flags.saveLatents) writeSafetensors(flags.saveLatents, { latents: { dtype: 'F32', shape: [...result.shape], data: result.latents } });
  console.log(out);
}

