// Options that several subcommands share, defined once: how a model is loaded (single-file
// config, tokenizer, prediction type, execution provider) and what is applied to it before it
// generates (LoRAs, Textual Inversion embeddings, CLIP skip).

import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { type LoraSpec, type Personalisation, parseLoraSpec, personalise } from '../pipelines/personalise.ts';
import type { StableDiffusion } from '../pipelines/stable-diffusion.ts';
import type { PipelineOptions } from '../pipelines/load-pipeline.ts';
import { WEIGHT_DTYPES, type WeightDType } from '../engine/quantize.ts';
import { collect, integer, oneOf } from './options.ts';

export const DEVICES = ['cpu', 'cuda'] as const;
export type Device = (typeof DEVICES)[number];

export interface LoadFlags {
  config?: string;
  tokenizer?: string;
  predictionType?: 'epsilon' | 'v_prediction';
  /** --vae and --preview-vae (cli/preview.ts), on the commands that have them. */
  vae?: string;
  previewVae?: string;
}

export interface DeviceFlags {
  device?: Device;
  dtype?: WeightDType;
}

export interface PersonalisationFlags {
  lora?: LoraSpec[];
  embedding?: string[];
  clipSkip?: number;
  /** false with --no-prompt-syntax: brackets and BREAK are read as text. */
  promptSyntax?: boolean;
}

/** --config, --tokenizer, --prediction-type: what a single-file checkpoint needs besides its weights. */
export function loadOptions(command: Command): Command {
  return command
    .option('--config <file>', 'original-style YAML config for a single-file checkpoint of non-standard shape')
    .option('--tokenizer <dir>', 'tokenizer folder for a single-file checkpoint (default: tokenizer/ beside it, else the bundled one)')
    .option('--prediction-type <type>', "override a single-file checkpoint's prediction type (SD 2.x 768-v: v_prediction)", oneOf(['epsilon', 'v_prediction'] as const));
}

/** --device: the execution provider the sessions run on; --dtype: the UNet's and text encoder's weights. */
export function deviceOption(command: Command): Command {
  return command
    .option('--device <name>', `where to run: ${DEVICES.join(' or ')} (default cpu)`, oneOf(DEVICES))
    .option('--dtype <type>', 'weights of the UNet and text encoder: fp32 (default), or q8 (int8 per channel, quantised at load; the VAE stays fp32)', oneOf(WEIGHT_DTYPES));
}

/** --lora, --embedding, --clip-skip, --no-prompt-syntax. */
export function personalisationOptions(command: Command): Command {
  return command
    .option('--clip-skip <n>', 'use the text encoder layer n from the end (1 = last)', integer(1, 12))
    .option('--no-prompt-syntax', 'read the prompts literally: no (emphasis), [de-emphasis], (word:1.3) or BREAK')
    .option('--lora <file[:weight]>', 'apply a LoRA file (diffusers or kohya keys), merged at this weight (default 1); repeatable', (v: string, prev: LoraSpec[] = []) => [...prev, parseLoraSpec(v)])
    .option('--embedding <file>', 'a Textual Inversion embedding: its token can be used in the prompt; repeatable', collect);
}

/** Load options from the flags, the files they name checked before anything loads (loadPipeline checks the device). */
export function loadOptionsFrom(flags: LoadFlags & DeviceFlags): PipelineOptions {
  if (flags.tokenizer !== undefined && !existsSync(flags.tokenizer)) throw new Error(`--tokenizer: no such folder ${flags.tokenizer}`);
  if (flags.config !== undefined && !existsSync(flags.config)) throw new Error(`--config: no such file ${flags.config}`);
  return { config: flags.config, tokenizer: flags.tokenizer, predictionType: flags.predictionType, device: flags.device, dtype: flags.dtype, vae: flags.vae, previewVae: flags.previewVae };
}

/** Refuses missing LoRA and embedding files before the model loads. */
export function checkPersonalisationFiles(flags: PersonalisationFlags): void {
  for (const { path } of flags.lora ?? []) if (!existsSync(path)) throw new Error(`--lora: no such file ${path}`);
  for (const path of flags.embedding ?? []) if (!existsSync(path)) throw new Error(`--embedding: no such file ${path}`);
}

/** Merges the LoRAs and adds the embeddings to a loaded model, printing what the user should know. */
export async function applyPersonalisation(sd: StableDiffusion, flags: PersonalisationFlags): Promise<Personalisation> {
  for (const warning of sd.components.warnings) console.error(`warning: ${warning}`);
  const personal = await personalise(sd.components, { loras: flags.lora, embeddings: flags.embedding });
  for (const warning of personal.warnings) console.error(`warning: ${warning}`);
  return personal;
}

/** What was applied, as A1111's extra PNG fields ("Clip skip", "Lora", "TI"). */
export function personalisationExtra(flags: PersonalisationFlags, personal: Personalisation): Record<string, string | number> {
  return {
    ...(flags.clipSkip ? { 'Clip skip': flags.clipSkip } : {}),
    // AUTOMATIC1111 always reads the syntax: a literal prompt says so, or it would not reproduce there.
    ...(flags.promptSyntax === false ? { 'Prompt syntax': 'off' } : {}),
    ...(personal.loraLabels.length ? { Lora: personal.loraLabels.join(', ') } : {}),
    ...(personal.embeddings.length ? { TI: personal.embeddings.map((e) => e.token).join(', ') } : {}),
  };
}
