// The ControlNet flags of `nuri generate`: `--controlnet PATH:IMAGE[:SCALE]` (repeatable), the
// step window, and the Canny preprocessor for ordinary pictures.

import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { CANNY_DEFAULTS } from '../io/canny.ts';
import { CONTROL_PREPROCESSORS, type ControlNetUnit, type ControlPreprocessor, controlNetLabels, readControlImage } from '../pipelines/controlnet.ts';
import type { StableDiffusion } from '../pipelines/stable-diffusion.ts';
import { number, oneOf } from './options.ts';

export interface ControlFlags {
  controlnet?: ControlSpec[];
  controlStart?: number;
  controlEnd?: number;
  controlPreprocess?: ControlPreprocessor;
  cannyLow?: number;
  cannyHigh?: number;
}

export interface ControlSpec {
  model: string;
  image: string;
  scale: number;
}

/**
 * `PATH:IMAGE[:SCALE]`. Paths may hold colons: the split taken is the first whose two sides both
 * exist (else the first colon), after a trailing number is taken as the scale.
 */
export function parseControlSpec(value: string): ControlSpec {
  const parts = value.split(':');
  let scale = 1;
  if (parts.length >= 3 && /^\s*-?[\d.]+(e-?\d+)?\s*$/i.test(parts.at(-1)!)) {
    scale = Number(parts.pop());
    if (!Number.isFinite(scale) || scale < 0 || scale > 10) throw new InvalidArgumentError(`the scale must be a number from 0 to 10, got ${scale}`);
  }
  if (parts.length < 2) throw new InvalidArgumentError('expected PATH:IMAGE[:SCALE] (a ControlNet folder or file, and its control image)');
  const splits = parts.slice(1).map((_, i) => ({ model: parts.slice(0, i + 1).join(':'), image: parts.slice(i + 1).join(':') }));
  const split = splits.find((s) => existsSync(s.model) && existsSync(s.image)) ?? splits[0];
  if (!split.model || !split.image) throw new InvalidArgumentError('expected PATH:IMAGE[:SCALE] with both parts given');
  return { ...split, scale };
}

export function controlOptions(command: Command): Command {
  return command
    .option('--controlnet <path:image[:scale]>', 'ControlNet (diffusers folder or .safetensors), its control image and conditioning scale (default 1); repeatable, the ControlNets add up', (v: string, prev: ControlSpec[] = []) => [...prev, parseControlSpec(v)])
    .option('--control-start <f>', 'ControlNets act from this fraction of the steps (default 0)', number(0, 1))
    .option('--control-end <f>', 'ControlNets act until this fraction of the steps (default 1)', number(0, 1))
    .option('--control-preprocess <name>', `turn the control images into what the ControlNet expects: ${CONTROL_PREPROCESSORS.join(', ')} (default none: they already are)`, oneOf(CONTROL_PREPROCESSORS))
    .option('--canny-low <t>', `Canny: weaker gradients are never edges (0–255 scale, default ${CANNY_DEFAULTS.low})`, number(0, 2000))
    .option('--canny-high <t>', `Canny: stronger gradients are always edges (default ${CANNY_DEFAULTS.high})`, number(0, 2000));
}

/** Reports flag mistakes and missing files before anything loads. */
export function checkControlFlags(flags: ControlFlags): void {
  const specs = flags.controlnet ?? [];
  const dependent = [['--control-start', flags.controlStart], ['--control-end', flags.controlEnd], ['--control-preprocess', flags.controlPreprocess], ['--canny-low', flags.cannyLow], ['--canny-high', flags.cannyHigh]] as const;
  const stray = dependent.find(([, v]) => v !== undefined);
  if (!specs.length && stray) throw new Error(`${stray[0]} needs --controlnet`);
  for (const s of specs) {
    if (!existsSync(s.model)) throw new Error(`--controlnet: no ControlNet at ${s.model}`);
    if (!existsSync(s.image)) throw new Error(`--controlnet: no control image at ${s.image}`);
  }
  if ((flags.controlStart ?? 0) >= (flags.controlEnd ?? 1)) throw new Error(`--control-start (${flags.controlStart ?? 0}) must be below --control-end (${flags.controlEnd ?? 1})`);
  if ((flags.cannyLow !== undefined || flags.cannyHigh !== undefined) && flags.controlPreprocess !== 'canny') throw new Error('--canny-low / --canny-high need --control-preprocess canny');
  const [low, high] = [flags.cannyLow ?? CANNY_DEFAULTS.low, flags.cannyHigh ?? CANNY_DEFAULTS.high];
  if (low > high) throw new Error(`--canny-low (${low}) must not be above --canny-high (${high})`);
}

/** Loads each ControlNet (a single file takes the model's UNet config) and its control image at the output size. */
export async function controlUnits(sd: StableDiffusion, flags: ControlFlags, width: number, height: number): Promise<ControlNetUnit[]> {
  const units: ControlNetUnit[] = [];
  for (const s of flags.controlnet ?? []) {
    const model = sd.loadControlNet(s.model);
    const image = await readControlImage(s.image, { width, height, preprocess: flags.controlPreprocess, canny: { low: flags.cannyLow, high: flags.cannyHigh } });
    units.push({ model, image, scale: s.scale, start: flags.controlStart, end: flags.controlEnd });
  }
  return units;
}

/** PNG parameters in the ControlNet extension's style: `ControlNet 0: "Module: canny, Model: …, Weight: 1, …"`. */
export function controlExtra(flags: ControlFlags): Record<string, string> {
  const { controlPreprocess: preprocess, controlStart: start, controlEnd: end, cannyLow, cannyHigh } = flags;
  return controlNetLabels((flags.controlnet ?? []).map((s) => ({ model: basename(s.model), weight: s.scale, start, end, preprocess, cannyLow, cannyHigh })));
}
