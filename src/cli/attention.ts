// `nuri attention`: generate an image and show where it attended for each word — the image and
// one labelled cross-attention heat map per prompt token, as one grid.

import type { Command } from 'commander';
import { imageGrid } from '../io/grid.ts';
import { heatMap } from '../io/heatmap.ts';
import { enlarge } from '../io/image.ts';
import { formatParameters } from '../io/parameters.ts';
import { writePng } from '../io/png.ts';
import { crossAttentionMaps } from '../pipelines/attention-maps.ts';
import { samplerDefaults } from '../pipelines/generate.ts';
import { loadPipeline } from '../pipelines/load-pipeline.ts';
import { SCHEDULER_NAMES, type SchedulerName, defaultSchedulerFor } from '../schedulers/index.ts';
import { SAMPLER_LABELS } from '../schedulers/labels.ts';
import { type PromptFlags, type SamplerFlags, checkSamplerFlags, GUIDANCE_HELP, outputPng, promptFileOption, readPrompt, samplerExtra, STEPS_HELP, timestepSpacingOption } from './inputs.ts';
import { interruptible } from './interrupt.ts';
import { checkVaeFlags, vaeOption } from './preview.ts';
import { type DeviceFlags, type LoadFlags, type PersonalisationFlags, applyPersonalisation, checkPersonalisationFiles, deviceOption, loadOptions, loadOptionsFrom, personalisationExtra, personalisationOptions } from './model-options.ts';
import { imageSize, integer, number, oneOf } from './options.ts';
import { defaultModelPath, progressBar } from './shared.ts';

interface AttentionFlags extends LoadFlags, DeviceFlags, PersonalisationFlags, PromptFlags, Pick<SamplerFlags, 'timestepSpacing'> {
  model?: string;
  negativePrompt?: string;
  steps?: number;
  scheduler?: SchedulerName;
  guidance?: number;
  seed?: number;
  width?: number;
  height?: number;
  out?: string;
}

/** Narrowest tile of the output grid, in pixels. */
const MIN_TILE = 128;

export function registerAttention(program: Command): void {
  const command = program
    .command('attention')
    .description("generate an image with one cross-attention heat map per prompt token (where the model drew each word)")
    .option('--model <path>', 'diffusers folder or single-file .safetensors (default: the bundled model)');
  vaeOption(loadOptions(command)).option('--prompt <text>', 'what to draw');
  promptFileOption(command)
    .option('--negative-prompt <text>', 'what to steer away from')
    .option('--steps <n>', STEPS_HELP, integer(1, 1000))
    .option('--scheduler <name>', `sampler: ${SCHEDULER_NAMES.join(', ')} (default: the model's own, as for generate)`, oneOf(SCHEDULER_NAMES));
  timestepSpacingOption(command)
    .option('--guidance <g>', GUIDANCE_HELP, number(0, 100))
    .option('--seed <s>', 'random seed; random when omitted', integer(0, 2 ** 32 - 1))
    .option('--width <w>', "image width, a multiple of 8 (default: the model's own size)", imageSize)
    .option('--height <h>', "image height, a multiple of 8 (default: the model's own size)", imageSize);
  personalisationOptions(command);
  deviceOption(command)
    .option('--out <file.png>', 'output PNG: the image, then one heat map per token')
    .action(async (flags: AttentionFlags) => {
      await interruptible((signal) => runAttention(flags, signal));
    });
}

async function runAttention(flags: AttentionFlags, signal: AbortSignal): Promise<void> {
  const prompt = readPrompt(flags);
  if (prompt === undefined) throw new Error('no prompt: nuri attention --prompt "a cat riding a bike" --out maps.png');
  if (!prompt.trim()) throw new Error('--prompt is empty: there are no tokens to map');
  if (flags.out === undefined) throw new Error('--out FILE.png is required');
  const out = outputPng(flags.out);
  checkPersonalisationFiles(flags);
  checkVaeFlags(flags);
  if (flags.scheduler) checkSamplerFlags(flags, flags.scheduler);
  const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 32);

  const sd = await loadPipeline(flags.model ?? defaultModelPath(), loadOptionsFrom(flags));
  const scheduler = flags.scheduler ?? defaultSchedulerFor(sd.components.schedulerConfig);
  checkSamplerFlags(flags, scheduler);
  const { steps, guidance } = samplerDefaults(sd, { ...flags, scheduler });
  const personal = await applyPersonalisation(sd, flags);
  // crossAttentionMaps checks the size against the model's VAE factor.
  const width = flags.width ?? sd.defaultSize;
  const height = flags.height ?? sd.defaultSize;
  const bar = progressBar('generating', steps);
  const result = await crossAttentionMaps(sd, {
    prompt: personal.expandPrompt(prompt),
    negativePrompt: flags.negativePrompt === undefined ? undefined : personal.expandPrompt(flags.negativePrompt),
    steps,
    scheduler,
    timestepSpacing: flags.timestepSpacing,
    guidance,
    seed,
    width,
    height,
    clipSkip: flags.clipSkip,
    promptSyntax: flags.promptSyntax,
    signal,
    onProgress: (p) => bar.update(p.step),
  }).finally(() => bar.stop());

  // Small pictures (the default model's 64 px) are shown enlarged, so that maps and labels can be read.
  const factor = Math.max(1, Math.ceil(MIN_TILE / Math.min(width, height)));
  const size = { width: width * factor, height: height * factor };
  const maps = result.tokens.map((t) => heatMap(t.map, result.mapHeight, result.mapWidth, { size }));
  const grid = await imageGrid([enlarge(result.image, factor), ...maps], { columns: Math.min(maps.length + 1, 8), padding: 4, labels: ['image', ...result.tokens.map((t) => t.token)] });
  const parameters = formatParameters({
    prompt,
    negativePrompt: flags.negativePrompt,
    steps,
    sampler: SAMPLER_LABELS[scheduler],
    guidance,
    seed,
    width,
    height,
    model: sd.name,
    dtype: flags.dtype,
    extra: { ...samplerExtra(flags), ...personalisationExtra(flags, personal) },
  });
  await writePng(out, grid, { parameters });
  console.log(out);
}
