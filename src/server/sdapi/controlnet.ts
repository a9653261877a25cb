// AUTOMATIC1111's ControlNet extension (sd-webui-controlnet) as clients call it: units in
// `alwayson_scripts.controlnet.args` on txt2img / img2img, each with its control image (base64),
// `module` (the preprocessor), `model`, `weight` and `guidance_start` / `guidance_end`. Each
// enabled unit becomes one entry of the native generate job's `controlnet` list.

import { CONTROL_PREPROCESSORS, type ControlPreprocessor } from '../../pipelines/controlnet.ts';
import { type RegistryEntry, findModel } from './catalog.ts';
import { SdapiError } from './errors.ts';
import { decodeBase64Image, prepareInitImage } from './images.ts';

/** The native job's `controlnet` entry (see server/schemas.ts). */
export interface NativeControlNet {
  model: string;
  image: string;
  fit: 'fill' | 'cover';
  weight: number;
  start: number;
  end: number;
  preprocess: ControlPreprocessor;
  cannyLow?: number;
  cannyHigh?: number;
}

/** The extension's script name in `alwayson_scripts` (clients write it in either case). */
export function controlNetScript(scripts: Record<string, unknown>): [string, unknown] | undefined {
  return Object.entries(scripts).find(([name]) => name.toLowerCase() === 'controlnet');
}

/** Fields of a unit that change nothing in Nuri when left at the extension's defaults. */
const IGNORED_DEFAULTS: Record<string, (v: unknown) => boolean> = {
  control_mode: (v) => v === undefined || v === 0 || v === 'Balanced',
  guess_mode: (v) => v === undefined || v === false,
  mask: (v) => v === undefined || v === null || v === '',
};

/** The extension's resize_mode (default "Crop and Resize") as the native `fit`. */
function resizeFit(mode: unknown, unit: number, notes: string[]): 'fill' | 'cover' {
  if (mode === 0 || mode === 'Just Resize') return 'fill';
  if (mode !== undefined && mode !== 1 && mode !== 'Crop and Resize') notes.push(`ControlNet unit ${unit}: resize_mode ${JSON.stringify(mode)} is not supported; the image was cropped and resized`);
  return 'cover';
}

/**
 * The native entries of the request's ControlNet units, their images stored through `saveImage`.
 * Errors name the unit's field (`alwayson_scripts.controlnet.args.0.model`).
 */
export async function controlNetUnits(
  script: [string, unknown],
  controlnets: readonly RegistryEntry[],
  saveImage: (png: Buffer) => Promise<string>,
  notes: string[],
): Promise<NativeControlNet[]> {
  const [name, value] = script;
  const base = ['alwayson_scripts', name];
  const args = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as { args?: unknown }).args : undefined;
  if (!Array.isArray(args)) throw SdapiError.invalid([...base, 'args'], 'must be a list of ControlNet units');
  const units: NativeControlNet[] = [];
  for (const [i, raw] of args.entries()) {
    const field = (key: string) => [...base, 'args', i, key];
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw SdapiError.invalid([...base, 'args', i], 'must be an object (a ControlNet unit)');
    const unit = raw as Record<string, unknown>;
    if (unit.enabled === false) continue;
    const number = (key: string, fallback: number, low: number, high: number): number => {
      const v = unit[key] ?? fallback;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < low || v > high) throw SdapiError.invalid(field(key), `must be a number from ${low} to ${high}`);
      return v;
    };
    const modelName = unit.model;
    if (typeof modelName !== 'string' || modelName === '' || modelName === 'None') throw SdapiError.invalid(field('model'), 'must name a ControlNet model');
    const model = findModel(controlnets, modelName);
    if (!model) throw new SdapiError(404, `ControlNet model not found: ${JSON.stringify(modelName)} (available: ${controlnets.map((m) => m.name).join(', ') || 'none'})`);
    const module = typeof unit.module === 'string' ? unit.module.toLowerCase() : 'none';
    if (!(CONTROL_PREPROCESSORS as readonly string[]).includes(module)) {
      throw SdapiError.invalid(field('module'), `preprocessor ${JSON.stringify(unit.module)} is not available (Nuri has ${CONTROL_PREPROCESSORS.join(', ')}; send a ready control image with module "none")`);
    }
    const imageKey = unit.image !== undefined && unit.image !== null ? 'image' : 'input_image';
    // The extension also takes {image, mask} objects for the image.
    const picture = unit[imageKey];
    const base64 = typeof picture === 'object' && picture !== null ? (picture as { image?: unknown }).image : picture;
    if (typeof base64 !== 'string') throw SdapiError.invalid(field(imageKey), 'must be a base64 control image');
    const png = await prepareInitImage(decodeBase64Image(base64, field(imageKey)), field(imageKey), { width: null, height: null }, 0);
    const start = number('guidance_start', 0, 0, 1);
    const end = number('guidance_end', 1, 0, 1);
    if (start >= end) throw SdapiError.invalid(field('guidance_start'), `must be below guidance_end (${end})`);
    const entry: NativeControlNet = { model: model.name, image: await saveImage(png), fit: resizeFit(unit.resize_mode, i, notes), weight: number('weight', 1, 0, 10), start, end, preprocess: module as ControlPreprocessor };
    if (module === 'canny') {
      // The extension sends −1 for "the module's default".
      const [a, b] = [unit.threshold_a, unit.threshold_b];
      if (typeof a === 'number' && a >= 0) entry.cannyLow = number('threshold_a', 100, 0, 2000);
      if (typeof b === 'number' && b >= 0) entry.cannyHigh = number('threshold_b', 200, 0, 2000);
    }
    for (const [key, isDefault] of Object.entries(IGNORED_DEFAULTS)) {
      if (!isDefault(unit[key])) notes.push(`ControlNet unit ${i}: ${key} ${JSON.stringify(unit[key])} is not supported and was ignored`);
    }
    units.push(entry);
  }
  return units;
}
