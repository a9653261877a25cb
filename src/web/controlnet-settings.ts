// ControlNet units of the Generate form: what each unit holds, the job's `controlnet` entries, and
// a unit read back from a job's params or from the `ControlNet N` text AUTOMATIC1111's extension
// (and Nuri) write into a PNG.

import type { GenerateParams } from '../server/schemas.ts';

/** One entry of the native generate job's `controlnet` list (server/schemas.ts). */
type ControlParams = GenerateParams['controlnet'][number];

export interface ControlUnitForm {
  /** A ControlNet of the server's models folder (GET /api/v1/models, `controlnets`). */
  model: string;
  /** The control image, by its server name; `url` is '' when the page cannot show it (an upload named by an old job). */
  image?: { name: string; url: string };
  fit: ControlParams['fit'];
  weight: number;
  start: number;
  end: number;
  preprocess: ControlParams['preprocess'];
  cannyLow: number;
  cannyHigh: number;
}

/** The server's defaults (schemas.ts; Canny's are io/canny.ts's, the extension's 100 and 200). */
export function newControlUnit(model: string): ControlUnitForm {
  return { model, fit: 'fill', weight: 1, start: 0, end: 1, preprocess: 'none', cannyLow: 100, cannyHigh: 200 };
}

/** The job's entry; a unit without an image is the page's to refuse before sending. */
export function controlUnitParams(unit: ControlUnitForm & { image: { name: string } }): ControlParams {
  return { model: unit.model, image: unit.image.name, fit: unit.fit, weight: unit.weight, start: unit.start, end: unit.end, preprocess: unit.preprocess, cannyLow: unit.cannyLow, cannyHigh: unit.cannyHigh };
}

/** A job's entry back as a unit (its image by name: an upload's picture is not served back). */
export function controlUnitFromParams(entry: Partial<Record<keyof ControlParams, unknown>>, imageUrl: (name: string) => string): ControlUnitForm {
  const unit = newControlUnit(typeof entry.model === 'string' ? entry.model : '');
  const num = (v: unknown, fallback: number) => (typeof v === 'number' ? v : fallback);
  return {
    ...unit,
    image: typeof entry.image === 'string' ? { name: entry.image, url: imageUrl(entry.image) } : undefined,
    fit: entry.fit === 'cover' ? 'cover' : 'fill',
    weight: num(entry.weight, unit.weight),
    start: num(entry.start, unit.start),
    end: num(entry.end, unit.end),
    preprocess: entry.preprocess === 'canny' ? 'canny' : 'none',
    cannyLow: num(entry.cannyLow, unit.cannyLow),
    cannyHigh: num(entry.cannyHigh, unit.cannyHigh),
  };
}

/**
 * One `ControlNet N` value of a PNG's parameters ("Module: canny, Model: name [hash], Weight: 1,
 * Resize Mode: Crop and Resize, Threshold A: 100, …") as a unit; what this server cannot take goes
 * to the notes. The control image is never in the text: the user chooses it again.
 */
export function controlUnitFromText(label: string, text: string, controlnets: readonly string[], fallbackModel: string): { unit: ControlUnitForm; notes: string[] } {
  const fields = new Map<string, string>();
  for (const part of text.split(',')) {
    const colon = part.indexOf(':');
    if (colon > 0) fields.set(part.slice(0, colon).trim().toLowerCase(), part.slice(colon + 1).trim());
  }
  const notes: string[] = [];
  const named = (fields.get('model') ?? '').replace(/\s*\[[0-9a-f]+\]$/i, '');
  const model = controlnets.includes(named) ? named : fallbackModel;
  if (model !== named) notes.push(`${label}: model "${named}" is not on this server${fallbackModel ? `; chose ${fallbackModel}` : ''}`);
  const unit = newControlUnit(model);
  const module = (fields.get('module') ?? 'none').toLowerCase();
  if (module === 'canny' || module === 'none') unit.preprocess = module;
  else notes.push(`${label}: preprocessor "${module}" is not one of Nuri's (none, canny); give it a ready-made control image`);
  const number = (key: string) => {
    const n = Number(fields.get(key));
    return fields.has(key) && Number.isFinite(n) ? n : undefined;
  };
  unit.weight = number('weight') ?? unit.weight;
  unit.start = number('guidance start') ?? unit.start;
  unit.end = number('guidance end') ?? unit.end;
  if (unit.preprocess === 'canny') [unit.cannyLow, unit.cannyHigh] = [number('threshold a') ?? unit.cannyLow, number('threshold b') ?? unit.cannyHigh];
  // The extension's default resize mode is "Crop and Resize".
  unit.fit = /^just resize$/i.test(fields.get('resize mode') ?? '') ? 'fill' : fields.has('resize mode') ? 'cover' : unit.fit;
  notes.push(`${label}: choose its control image`);
  return { unit, notes };
}

/**
 * Where an error about ControlNets goes: the server's refusal names the unit and field
 * ("controlnet.1.start"); a failed run names the ControlNet's file, which holds the unit's model name.
 */
export function controlUnitErrors(errors: Record<string, string>, units: readonly ControlUnitForm[]): { unit: Record<string, string>[]; general?: string } {
  const unit = units.map((_, i) => {
    const prefix = `controlnet.${i}.`;
    return Object.fromEntries(Object.entries(errors).flatMap(([key, message]) => (key.startsWith(prefix) ? [[key.slice(prefix.length), message]] : [])));
  });
  const general = errors.controlnet;
  if (!general || unit.some((u) => Object.keys(u).length > 0)) return { unit };
  const i = units.findIndex((u) => u.model && new RegExp(`(^|[/"\\s])${escapeRegExp(u.model)}(\\.safetensors)?($|["/:\\s,])`).test(general));
  if (i >= 0) unit[i].model = general;
  return i >= 0 ? { unit } : { unit, general };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
