// Inputs that generate, edit and attention read the same way, checked before any model loads:
// the prompt (an argument, --prompt, or --prompt-file FILE / - for stdin), the output PNG's
// folder, initial latents, and the sampler settings that only some samplers have.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, resolve } from 'node:path';
import type { Command } from 'commander';
import { type LatentsFile, readLatentsFile } from '../io/latents-file.ts';
import type { SchedulerName, TimestepSpacing } from '../schedulers/index.ts';
import { DEFAULTS } from '../pipelines/generate.ts';
import { oneOf } from './options.ts';

/**
 * onnxruntime-node 1.30 crashes (SIGSEGV) once a process's arguments total about 29 KB, whatever
 * the model: longer command lines are refused before anything loads, pointing to --prompt-file.
 */
export const MAX_ARGUMENT_BYTES = 16 * 1024;

export function checkArgumentLength(argv: readonly string[] = process.argv): void {
  const bytes = argv.reduce((sum, arg) => sum + Buffer.byteLength(arg) + 1, 0);
  if (bytes > MAX_ARGUMENT_BYTES) {
    throw new Error(`the command line is ${bytes.toLocaleString('en')} bytes, over the ${MAX_ARGUMENT_BYTES.toLocaleString('en')} that ONNX Runtime survives: pass a long prompt with --prompt-file FILE (or --prompt-file - to read it from stdin)`);
  }
}

export interface PromptFlags {
  prompt?: string;
  promptFile?: string;
}

/** --prompt-file, beside a command's --prompt. */
export function promptFileOption(command: Command): Command {
  return command.option('--prompt-file <file>', 'read the prompt from this file (- for stdin): for prompts too long for a command line');
}

/** The prompt from exactly one of the positional argument, --prompt and --prompt-file; undefined when none is given. */
export function readPrompt(flags: PromptFlags, positional?: string): string | undefined {
  const given = [positional !== undefined && 'an argument', flags.prompt !== undefined && '--prompt', flags.promptFile !== undefined && '--prompt-file'].filter(Boolean);
  if (given.length > 1) throw new Error(`give the prompt once: ${given.join(' and ')} both name one`);
  if (flags.promptFile === undefined) return flags.prompt ?? positional;
  const file = flags.promptFile;
  if (file !== '-' && !existsSync(file)) throw new Error(`--prompt-file: no such file ${file}`);
  const text = readFileSync(file === '-' ? 0 : file, 'utf8').replace(/\r?\n$/, '');
  if (!text.trim()) throw new Error(`--prompt-file ${file === '-' ? '(stdin)' : file} is empty`);
  return text;
}

export function mustBeFolder(dir: string, flag: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`${flag}: folder ${dir} does not exist`);
}

/** The absolute path of a PNG to write, its folder checked. */
export function outputPng(value: string, flag = '--out'): string {
  const out = resolve(value);
  if (extname(out).toLowerCase() !== '.png') throw new Error(`${flag} must name a .png file, got ${value}`);
  mustBeFolder(dirname(out), flag);
  return out;
}

/** The --latents file (checked by io/latents-file.ts), holding at most `maxBatch` latents. */
export function readLatents(path: string, maxBatch = Infinity): LatentsFile {
  const latents = readLatentsFile(path);
  if (latents.shape[0] > maxBatch) throw new Error(`--latents ${path}: tensor "latents" [${latents.shape.join(', ')}] holds ${latents.shape[0]} latents; this command takes at most ${maxBatch}`);
  return latents;
}

export interface SamplerFlags {
  eta?: number;
  timestepSpacing?: TimestepSpacing;
}

const SPACINGS: readonly TimestepSpacing[] = ['leading', 'linspace', 'trailing'];

/** --timestep-spacing, beside a command's --scheduler. */
/** --steps and --guidance left out take the sampler's (`samplerDefaults`). */
export const STEPS_HELP = `denoising steps (default ${DEFAULTS.steps}; 4 with the lcm sampler)`;
export const GUIDANCE_HELP = `guidance scale: classifier-free (≤ 1 disables it), or an LCM-distilled UNet's own input (default ${DEFAULTS.guidance}; LCM-distilled 8.5; LCM-LoRA with the lcm sampler 1)`;

export function timestepSpacingOption(command: Command): Command {
  return command.option('--timestep-spacing <s>', `which training timesteps the steps visit: ${SPACINGS.join(', ')} (default: the model's scheduler config; trailing for SD-Turbo)`, oneOf(SPACINGS));
}

/** Settings only some samplers have are refused with the others rather than silently ignored. */
export function checkSamplerFlags(flags: SamplerFlags, scheduler: SchedulerName): void {
  if (flags.eta !== undefined && scheduler !== 'ddim') throw new Error(`--eta is DDIM's η; the ${scheduler} sampler has none (use --scheduler ddim, or drop --eta)`);
  if (flags.timestepSpacing !== undefined && scheduler === 'lcm') throw new Error('--timestep-spacing does not apply to lcm: its timesteps come from its distillation grid (original_inference_steps)');
}

/** The PNG's extra A1111 fields for those settings. */
export function samplerExtra(flags: SamplerFlags): Record<string, string | number> {
  return { ...(flags.eta !== undefined ? { Eta: flags.eta } : {}), ...(flags.timestepSpacing ? { 'Timestep spacing': flags.timestepSpacing } : {}) };
}
