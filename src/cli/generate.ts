// `nuri generate`: txt2img, img2img, inpainting and outpainting from the command line.

import { existsSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { writeSafetensors } from '../engine/safetensors.ts';
import { checkLatentsFit, checkStepNoiseSteps } from '../io/latents-file.ts';
import { readImage } from '../io/image.ts';
import { formatParameters } from '../io/parameters.ts';
import { writePng } from '../io/png.ts';
import { DEFAULTS, generate, makeSampler, samplerDefaults } from '../pipelines/generate.ts';
import { INPAINT_FILLS, MASK_BLUR, type InpaintFill, type OutpaintAmounts, outpaintCanvas, parseOutpaint } from '../pipelines/inpaint.ts';
import { maskFromImage } from '../pipelines/masks.ts';
import { loadPipeline } from '../pipelines/load-pipeline.ts';
import { SCHEDULER_NAMES, type SchedulerName, defaultSchedulerFor, img2imgTimesteps } from '../schedulers/index.ts';
import { SAMPLER_LABELS } from '../schedulers/labels.ts';
import { type PromptFlags, type SamplerFlags, checkSamplerFlags, GUIDANCE_HELP, mustBeFolder, outputPng, promptFileOption, readLatents, readPrompt, samplerExtra, STEPS_HELP, timestepSpacingOption } from './inputs.ts';
import { type ControlFlags, checkControlFlags, controlExtra, controlOptions, controlUnits } from './control-options.ts';
import { interruptible } from './interrupt.ts';
import { type DeviceFlags, type LoadFlags, type PersonalisationFlags, applyPersonalisation, checkPersonalisationFiles, deviceOption, loadOptions, loadOptionsFrom, personalisationExtra, personalisationOptions } from './model-options.ts';
import { imageSize, integer, number, oneOf } from './options.ts';
import { type PreviewFlags, checkVaeFlags, previewOptions, previewWriter, vaeOption } from './preview.ts';
import { InvalidArgumentError } from 'commander';
import { defaultModelPath, progressBar } from './shared.ts';
import { type SizeConditioningFlags, sizeConditioningFrom, sizeConditioningOptions } from './size-conditioning.ts';

interface GenerateFlags extends LoadFlags, DeviceFlags, PersonalisationFlags, PromptFlags, SamplerFlags, ControlFlags, SizeConditioningFlags, PreviewFlags {
  model?: string;
  negativePrompt?: string;
  steps?: number;
  scheduler?: SchedulerName;
  guidance?: number;
  seed?: number;
  width?: number;
  height?: number;
  batch?: number;
  initImage?: string;
  strength?: number;
  mask?: string;
  maskBlur: number;
  inpaintFill: InpaintFill;
  onlyMasked?: boolean;
  onlyMaskedPadding: number;
  outpaint?: OutpaintAmounts;
  latents?: string;
  saveLatents?: string;
  out?: string;
}

export function registerGenerate(program: Command): void {
  const command = program
    .command('generate')
    .description('make images from a text prompt (txt2img), or from a picture and a prompt (img2img, inpainting, outpainting)')
    .argument('[prompt]', 'what to draw (or use --prompt / --prompt-file)')
    .option('--model <path>', 'diffusers folder or single-file .safetensors (default: the bundled model)');
  vaeOption(loadOptions(command)).option('--prompt <text>', 'what to draw');
  promptFileOption(command)
    .option('--negative-prompt <text>', 'what to steer away from')
    .option('--steps <n>', STEPS_HELP, integer(1, 1000))
    .option('--scheduler <name>', `sampler: ${SCHEDULER_NAMES.join(', ')} (default: the one the model's scheduler config names, ddim for SD 1.x's PNDM)`, oneOf(SCHEDULER_NAMES));
  timestepSpacingOption(command)
    .option('--guidance <g>', GUIDANCE_HELP, number(0, 100))
    .option('--eta <e>', "DDIM's η: 0 is deterministic, 1 is DDPM-like (DDIM only)", number(0, 1))
    .option('--seed <s>', 'random seed (image i of a batch uses seed + i); random when omitted', integer(0, 2 ** 32 - 1))
    .option('--width <w>', "image width, a multiple of 8 (default: the model's own size, 512 for SD 1.5)", imageSize)
    .option('--height <h>', "image height, a multiple of 8 (default: the model's own size)", imageSize)
    .option('--batch <n>', 'images to make', integer(1, 64))
    .option('--init-image <png>', 'img2img: start from this picture')
    .option('--strength <s>', `img2img: how much to change the picture (0–1], default ${DEFAULTS.strength}; 1 when inpainting`, number(0.01, 1))
    .option('--mask <png>', 'inpainting: repaint --init-image where this picture is white, keep it where black')
    .option('--mask-blur <px>', 'inpainting: Gaussian blur of the mask in pixels (softens the seam; 0 for the hard edge diffusers uses)', number(0, 64), MASK_BLUR)
    .option('--inpaint-fill <how>', `what the masked area starts from below strength 1: ${INPAINT_FILLS.join(', ')}`, oneOf(INPAINT_FILLS), 'original')
    .option('--only-masked', "inpainting: draw only the part around the mask, at --width × --height, and lay it into the picture, which keeps its own size (AUTOMATIC1111's \"Only masked\")")
    .option('--only-masked-padding <px>', 'with --only-masked: pixels of the picture around the mask that the model sees', integer(0, 4096), 32)
    .option('--outpaint <sides>', 'grow the canvas of --init-image and paint the new border: left=128,right=128,top=…,bottom=… (pixels, multiples of 8)', outpaintAmounts)
    .option('--latents <file>', 'initial noise: safetensors with one fp32 tensor "latents" [B,4,H/f,W/f] (f: the VAE downscale, 8 for SD, 4 for the default model), optionally "step_noise" [S,B,4,H/f,W/f] (the noise of each sampler step); when inpainting, also "masked_image_noise" / "image_noise", and the latents start the run at any strength, as in diffusers')
    .option('--save-latents <file>', 'write the final latents as safetensors tensor "latents"');
  sizeConditioningOptions(command);
  personalisationOptions(command);
  controlOptions(command);
  previewOptions(command);
  deviceOption(command)
    .option('--out <file.png>', 'output PNG (a batch writes name-1.png, name-2.png, …)')
    .action(async (positional: string | undefined, flags: GenerateFlags) => {
      await interruptible((signal) => runGenerate(positional, flags, signal));
    });
}

async function runGenerate(positional: string | undefined, flags: GenerateFlags, signal: AbortSignal): Promise<void> {
  // Everything the user got wrong is reported before the model loads or anything is written.
  const prompt = readPrompt(flags, positional);
  if (prompt === undefined) throw new Error('no prompt: nuri generate "a red apple"');
  const modelPath = flags.model ?? defaultModelPath();
  const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 32);
  const out = outputPng(flags.out ?? `nuri-${seed}.png`);
  if (flags.saveLatents) mustBeFolder(dirname(resolve(flags.saveLatents)), '--save-latents');
  if (flags.initImage && !existsSync(flags.initImage)) throw new Error(`--init-image: no such file ${flags.initImage}`);
  if (flags.strength !== undefined && !flags.initImage) throw new Error('--strength needs --init-image');
  if ((flags.mask || flags.outpaint) && !flags.initImage) throw new Error(`${flags.mask ? '--mask' : '--outpaint'} needs --init-image, the picture to paint in`);
  if (flags.mask && !existsSync(flags.mask)) throw new Error(`--mask: no such file ${flags.mask}`);
  if (flags.latents && flags.outpaint) throw new Error('--latents and --outpaint cannot be combined: the canvas grows after the latents are read');
  if (flags.onlyMasked && !flags.mask) throw new Error('--only-masked needs --mask, the area to draw');
  if (flags.onlyMasked && flags.outpaint) throw new Error('--only-masked and --outpaint cannot be combined: outpainting draws the grown canvas whole');
  if (flags.onlyMasked && flags.controlnet?.length) throw new Error('--only-masked and --controlnet cannot be combined yet: the control image is not cut out with the picture');
  const inpainting = Boolean(flags.mask || flags.outpaint);
  if (flags.scheduler) checkSamplerFlags(flags, flags.scheduler);
  checkPersonalisationFiles(flags);
  checkControlFlags(flags);
  const preview = checkVaeFlags(flags);
  const strength = flags.strength ?? (inpainting ? 1 : DEFAULTS.strength);
  const sizeConditioning = sizeConditioningFrom(flags);

  if (flags.latents && flags.initImage && !inpainting) throw new Error('--latents and --init-image cannot be combined (except to inpaint, with --mask or --outpaint)');
  const given = flags.latents ? readLatents(flags.latents) : undefined;

  // Loading reads configs only (weights stay in their files); the size defaults and the latent
  // grid (H/f × W/f, f the VAE's downscale) depend on the model.
  const sd = await loadPipeline(modelPath, { ...loadOptionsFrom(flags), releaseSessions: true });
  const scheduler = flags.scheduler ?? defaultSchedulerFor(sd.components.schedulerConfig);
  checkSamplerFlags(flags, scheduler);
  const { steps, guidance } = samplerDefaults(sd, { ...flags, scheduler });
  const f = sd.vaeScaleFactor;
  let { width, height, batch } = flags;
  let latents: Float32Array | undefined;
  if (given) {
    checkLatentsFit(flags.latents!, given, { channels: sd.latentChannels });
    const [b, , h, w] = given.shape;
    if ((batch ?? b) !== b || (width ?? w * f) !== w * f || (height ?? h * f) !== h * f) {
      throw new Error(`--latents ${flags.latents} has shape [${given.shape.join(', ')}], which does not fit --batch ${batch ?? b} --width ${width ?? w * f} --height ${height ?? h * f}`);
    }
    [batch, width, height, latents] = [b, w * f, h * f, given.data];
    // Inpainting below strength 1 runs only the schedule's last ⌊steps·strength⌋ steps.
    const sampler = makeSampler(sd, { ...flags, scheduler, steps }).scheduler;
    const stepsRun = flags.initImage ? img2imgTimesteps(sampler, strength).timesteps.length : sampler.timesteps.length;
    checkStepNoiseSteps(flags.latents!, given, stepsRun, scheduler);
  }
  batch ??= 1;
  width ??= sd.defaultSize;
  height ??= sd.defaultSize;
  const personal = await applyPersonalisation(sd, flags);
  // "Only masked" keeps the picture at its own size (the mask is read at it); else both are read at the run's.
  const onlyMasked = flags.onlyMasked ? { padding: flags.onlyMaskedPadding } : undefined;
  let initImage = flags.initImage ? await readImage(flags.initImage, onlyMasked ? {} : { width, height }) : undefined;
  const maskSize = onlyMasked ? { width: initImage!.width, height: initImage!.height } : { width, height };
  let mask = flags.mask ? maskFromImage(await readImage(flags.mask, maskSize)) : undefined;
  if (flags.outpaint) {
    ({ image: initImage, mask } = outpaintCanvas(initImage!, flags.outpaint, mask));
    [width, height] = [initImage.width, initImage.height];
  }
  const inpaint = mask && { mask, blur: flags.maskBlur, fill: flags.inpaintFill, maskedImageNoise: given?.maskedImageNoise, imageNoise: given?.imageNoise, onlyMasked };
  const controlNets = await controlUnits(sd, flags, width, height);
  const bar = progressBar('generating', flags.initImage ? Math.max(1, Math.floor(steps * strength)) : steps);
  const result = await generate(sd, {
    prompts: new Array(batch).fill(personal.expandPrompt(prompt)),
    negativePrompt: flags.negativePrompt === undefined ? undefined : personal.expandPrompt(flags.negativePrompt),
    steps,
    scheduler,
    timestepSpacing: flags.timestepSpacing,
    guidance,
    eta: flags.eta,
    seed,
    width,
    height,
    latents,
    stepNoise: given?.stepNoise,
    initImage,
    strength,
    inpaint,
    latentsAsStart: inpaint !== undefined,
    clipSkip: flags.clipSkip,
    controlNets,
    ...sizeConditioning,
    promptSyntax: flags.promptSyntax,
    signal,
    onStep: preview === undefined ? undefined : previewWriter(sd, preview, flags.previewEvery),
    onProgress: (p) => bar.update(p.step),
  }).finally(() => bar.stop());
  for (const warning of result.warnings) console.error(`warning: ${warning}`);

  const paths = result.images.map((_, i) => (batch === 1 ? out : out.replace(/\.png$/i, `-${i + 1}.png`)));
  for (const [i, image] of result.images.entries()) {
    const parameters = formatParameters({
      prompt,
      negativePrompt: flags.negativePrompt,
      steps,
      sampler: SAMPLER_LABELS[scheduler],
      guidance,
      // Given latents are the noise: the seed drew nothing that made this image.
      seed: given ? undefined : result.seeds[i],
      width,
      height,
      model: sd.name,
      denoisingStrength: flags.initImage ? strength : undefined,
      dtype: flags.dtype,
      sizeConditioning,
      extra: { ...samplerExtra(flags), ...(flags.vae ? { VAE: basename(flags.vae) } : {}), ...(inpaint ? { 'Mask blur': flags.maskBlur } : {}), ...(onlyMasked ? { 'Inpaint area': 'Only masked', 'Masked area padding': onlyMasked.padding } : {}), ...personalisationExtra(flags, personal), ...controlExtra(flags) },
    });
    await writePng(paths[i], image, { parameters });
  }
  if (flags.saveLatents) writeSafetensors(flags.saveLatents, { latents: { dtype: 'F32', shape: [...result.shape], data: result.latents } });
  console.log(paths.join('\n'));
}

/** `--outpaint left=128,right=64`: pixels per side, multiples of 8 so the canvas stays one. */
function outpaintAmounts(value: string): OutpaintAmounts {
  try {
    const amounts = parseOutpaint(value);
    const odd = Object.entries(amounts).find(([, n]) => n % 8);
    if (odd) throw new Error(`${odd[0]}=${odd[1]} is not a multiple of 8`);
    return amounts;
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message.replace(/^--outpaint: /, ''));
  }
}
