// `nuri generate`: txt2img and img2img from the command line.

import { existsSync, statSync } from 'node:fs';
import { dirname, extname, resolve } from 'node:path';
import type { Command } from 'commander';
import { writeSafetensors } from '../engine/safetensors.ts';
import { checkLatentsFit, readLatentsFile } from '../io/latents-file.ts';
import { sizeMultiple } from '../models/size-limits.ts';
import { readImage } from '../io/image.ts';
import { formatParameters } from '../io/parameters.ts';
import { writePng } from '../io/png.ts';
import { DEFAULTS, generate } from '../pipelines/generate.ts';
import { type LoraSpec, parseLoraSpec, personalise } from '../pipelines/personalise.ts';
import { StableDiffusion } from '../pipelines/stable-diffusion.ts';
import { SCHEDULER_NAMES, type SchedulerName } from '../schedulers/index.ts';
import { SAMPLER_LABELS } from '../schedulers/labels.ts';
import { collect, imageSize, integer, number, oneOf } from './options.ts';
import { bundledTokenizer, defaultModelPath, progressBar } from './shared.ts';

interface GenerateFlags {
  model?: string;
  config?: string;
  tokenizer?: string;
  predictionType?: 'epsilon' | 'v_prediction';
  prompt?: string;
  negativePrompt?: string;
  steps: number;
  scheduler: SchedulerName;
  guidance: number;
  eta?: number;
  seed?: number;
  width?: number;
  height?: number;
  batch?: number;
  initImage?: string;
  strength?: number;
  latents?: string;
  saveLatents?: string;
  clipSkip?: number;
  lora?: LoraSpec[];
  embedding?: string[];
  out?: string;
}

export function registerGenerate(program: Command): void {
  program
    .command('generate')
    .description('make images from a text prompt (txt2img), or from a picture and a prompt (img2img)')
    .argument('[prompt]', 'what to draw (or use --prompt)')
    .option('--model <path>', 'diffusers folder or single-file .safetensors (default: the bundled model)')
    .option('--config <file>', 'original-style YAML config for a single-file checkpoint of non-standard shape')
    .option('--tokenizer <dir>', 'tokenizer folder for a single-file checkpoint (default: tokenizer/ beside it, else the bundled one)')
    .option('--prediction-type <type>', 'override a single-file checkpoint\'s prediction type (SD 2.x 768-v: v_prediction)', oneOf(['epsilon', 'v_prediction'] as const))
    .option('--prompt <text>', 'what to draw')
    .option('--negative-prompt <text>', 'what to steer away from')
    .option('--steps <n>', 'denoising steps', integer(1, 1000), DEFAULTS.steps)
    .option('--scheduler <name>', `sampler: ${SCHEDULER_NAMES.join(', ')}`, oneOf(SCHEDULER_NAMES), DEFAULTS.scheduler)
    .option('--guidance <g>', 'classifier-free guidance scale (≤ 1 disables it)', number(0, 100), DEFAULTS.guidance)
    .option('--eta <e>', "DDIM's η: 0 is deterministic, 1 is DDPM-like", number(0, 1))
    .option('--seed <s>', 'random seed (image i of a batch uses seed + i); random when omitted', integer(0, 2 ** 32 - 1))
    .option('--width <w>', "image width, a multiple of 8 (default: the model's own size, 512 for SD 1.5)", imageSize)
    .option('--height <h>', "image height, a multiple of 8 (default: the model's own size)", imageSize)
    .option('--batch <n>', 'images to make', integer(1, 64))
    .option('--init-image <png>', 'img2img: start from this picture')
    .option('--strength <s>', `img2img: how much to change the picture (0–1], default ${DEFAULTS.strength}`, number(0.01, 1))
    .option('--latents <file>', 'initial noise: safetensors with one fp32 tensor "latents" [B,4,H/f,W/f] (f: the VAE downscale, 8 for SD, 4 for the default model)')
    .option('--save-latents <file>', 'write the final latents as safetensors tensor "latents"')
    .option('--clip-skip <n>', 'use the text encoder layer n from the end (1 = last)', integer(1, 12))
    .option('--lora <file[:weight]>', 'apply a LoRA file (diffusers or kohya keys), merged at this weight (default 1); repeatable', (v: string, prev: LoraSpec[] = []) => [...prev, parseLoraSpec(v)])
    .option('--embedding <file>', 'a Textual Inversion embedding: its token can be used in the prompt; repeatable', collect)
    .option('--out <file.png>', 'output PNG (a batch writes name-1.png, name-2.png, …)')
    .action(async (positional: string | undefined, flags: GenerateFlags) => {
      await runGenerate(positional, flags);
    });
}

async function runGenerate(positional: string | undefined, flags: GenerateFlags): Promise<void> {
  // Everything the user got wrong is reported before the model loads or anything is written.
  if (positional !== undefined && flags.prompt !== undefined) throw new Error('give the prompt either as an argument or with --prompt, not both');
  const prompt = flags.prompt ?? positional;
  if (prompt === undefined) throw new Error('no prompt: nuri generate "a red apple"');
  const modelPath = flags.model ?? defaultModelPath();
  const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 32);
  const out = resolve(flags.out ?? `nuri-${seed}.png`);
  if (extname(out).toLowerCase() !== '.png') throw new Error(`--out must name a .png file, got ${flags.out}`);
  mustBeFolder(dirname(out), '--out');
  if (flags.saveLatents) mustBeFolder(dirname(resolve(flags.saveLatents)), '--save-latents');
  if (flags.initImage && !existsSync(flags.initImage)) throw new Error(`--init-image: no such file ${flags.initImage}`);
  if (flags.strength !== undefined && !flags.initImage) throw new Error('--strength needs --init-image');
  for (const { path } of flags.lora ?? []) if (!existsSync(path)) throw new Error(`--lora: no such file ${path}`);
  for (const path of flags.embedding ?? []) if (!existsSync(path)) throw new Error(`--embedding: no such file ${path}`);
  const strength = flags.strength ?? DEFAULTS.strength;

  if (flags.latents && flags.initImage) throw new Error('--latents and --init-image cannot be combined');
  const given = flags.latents ? readLatentsFile(flags.latents) : undefined;

  // Loading reads configs only (weights stay in their files); the size defaults and the latent
  // grid (H/f × W/f, f the VAE's downscale) depend on the model.
  const sd = StableDiffusion.load(modelPath, { config: flags.config, tokenizer: flags.tokenizer, defaultTokenizer: bundledTokenizer, predictionType: flags.predictionType, releaseSessions: true });
  const f = sd.vaeScaleFactor;
  let { width, height, batch } = flags;
  let latents: Float32Array | undefined;
  if (given) {
    checkLatentsFit(flags.latents!, given, { channels: sd.latentChannels, multiple: sizeMultiple(sd.components.unet.config, sd.components.vae.config) / f });
    const [b, , h, w] = given.shape;
    if ((batch ?? b) !== b || (width ?? w * f) !== w * f || (height ?? h * f) !== h * f) {
      throw new Error(`--latents ${flags.latents} has shape [${given.shape.join(', ')}], which does not fit --batch ${batch ?? b} --width ${width ?? w * f} --height ${height ?? h * f}`);
    }
    [batch, width, height, latents] = [b, w * f, h * f, given.data];
  }
  batch ??= 1;
  width ??= sd.defaultSize;
  height ??= sd.defaultSize;
  for (const warning of sd.components.warnings) console.error(`warning: ${warning}`);
  const personal = await personalise(sd.components, { loras: flags.lora, embeddings: flags.embedding });
  for (const warning of personal.warnings) console.error(`warning: ${warning}`);
  const initImage = flags.initImage ? await readImage(flags.initImage, { width, height }) : undefined;
  const bar = progressBar('generating', flags.initImage ? Math.max(1, Math.floor(flags.steps * strength)) : flags.steps);
  const result = await generate(sd, {
    prompts: new Array(batch).fill(personal.expandPrompt(prompt)),
    negativePrompt: flags.negativePrompt === undefined ? undefined : personal.expandPrompt(flags.negativePrompt),
    steps: flags.steps,
    scheduler: flags.scheduler,
    guidance: flags.guidance,
    eta: flags.eta,
    seed,
    width,
    height,
    latents,
    initImage,
    strength,
    clipSkip: flags.clipSkip,
    onStep: (p) => bar.update(p.step),
  }).finally(() => bar.stop());

  const paths = result.images.map((_, i) => (batch === 1 ? out : out.replace(/\.png$/i, `-${i + 1}.png`)));
  for (const [i, image] of result.images.entries()) {
    const parameters = formatParameters({
      prompt,
      negativePrompt: flags.negativePrompt,
      steps: flags.steps,
      sampler: SAMPLER_LABELS[flags.scheduler],
      guidance: flags.guidance,
      seed: result.seeds[i],
      width,
      height,
      model: sd.name,
      denoisingStrength: flags.initImage ? strength : undefined,
      extra: {
        ...(flags.clipSkip ? { 'Clip skip': flags.clipSkip } : {}),
        ...(personal.loraLabels.length ? { Lora: personal.loraLabels.join(', ') } : {}),
        ...(personal.embeddings.length ? { TI: personal.embeddings.map((e) => e.token).join(', ') } : {}),
      },
    });
    await writePng(paths[i], image, { parameters });
  }
  if (flags.saveLatents) writeSafetensors(flags.saveLatents, { latents: { dtype: 'F32', shape: [...result.shape], data: result.latents } });
  console.log(paths.join('\n'));
}

function mustBeFolder(dir: string, flag: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`${flag}: folder ${dir} does not exist`);
}
