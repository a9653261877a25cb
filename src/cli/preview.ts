// `--vae`, `--preview-vae`, `--preview-every N --preview FILE`: another VAE for the pictures, and a
// preview PNG rewritten as sampling goes — by the tiny VAE (TAESD) at the picture's size when the
// pipeline has one, else the linear latent→RGB map enlarged to it. Each write is atomic, so a viewer
// that reloads the file never sees half a picture.

import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { imageGrid } from '../io/grid.ts';
import { enlarge } from '../io/image.ts';
import { writePng } from '../io/png.ts';
import type { StepProgress } from '../pipelines/generate.ts';
import type { StableDiffusion } from '../pipelines/stable-diffusion.ts';
import { outputPng } from './inputs.ts';
import { integer } from './options.ts';

export interface VaeFlags {
  vae?: string;
}

export interface PreviewFlags {
  previewVae?: string;
  previewEvery?: number;
  preview?: string;
}

/** --vae: generate, edit and attention decode (and encode) with it. */
export function vaeOption(command: Command): Command {
  return command.option('--vae <path>', 'another VAE: an AutoencoderKL folder or .safetensors file, or an AutoencoderTiny folder (TAESD: fast, a little less detail)');
}

/** --preview-vae, --preview-every, --preview. */
export function previewOptions(command: Command): Command {
  return command
    .option('--preview-vae <dir>', 'an AutoencoderTiny folder (TAESD) for the previews only; the picture keeps the model\'s VAE')
    .option('--preview-every <n>', 'write the preview every n steps (default 1 with --preview)', integer(1, 1000))
    .option('--preview <file.png>', 'rewrite this PNG with a preview of the picture as sampling goes');
}

/** Checks the flags before the model loads; returns the preview file's absolute path, if any. */
export function checkVaeFlags(flags: VaeFlags & PreviewFlags): string | undefined {
  if (flags.vae !== undefined && !existsSync(flags.vae)) throw new Error(`--vae: no such file or folder ${flags.vae}`);
  if (flags.previewVae !== undefined && !existsSync(flags.previewVae)) throw new Error(`--preview-vae: no such folder ${flags.previewVae}`);
  if (flags.previewVae !== undefined && flags.vae !== undefined) throw new Error('--preview-vae and --vae cannot be combined (a tiny --vae draws the previews itself)');
  if (flags.previewEvery !== undefined && flags.preview === undefined) throw new Error('--preview-every needs --preview FILE');
  return flags.preview === undefined ? undefined : outputPng(flags.preview, '--preview');
}

/** A step callback writing the preview every `every` steps; batches become one grid. */
export function previewWriter(sd: StableDiffusion, path: string, every = 1): (p: StepProgress) => Promise<void> {
  return async (p) => {
    if (p.step % every !== 0 && p.step !== p.total) return;
    // Without a tiny VAE the preview is latent-sized: enlarge it to the picture's size.
    const factor = sd.tinyVae ? 1 : sd.vaeScaleFactor;
    const images = (await p.decodePreview()).map((image) => enlarge(image, factor));
    await writePng(path, images.length === 1 ? images[0] : await imageGrid(images));
  };
}
