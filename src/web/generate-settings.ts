// The Generate form as data, and its conversions: to job params, from a finished job's params
// ("use these settings"), and from a PNG's A1111 `parameters` text.

import { type GenerationParameters, parseParameters } from '../io/parameters.ts';
import type { SchedulerName } from '../schedulers/index.ts';
import { samplerFromLabel } from '../schedulers/labels.ts';
import type { Job } from './api.ts';

export type SeedMode = 'random' | 'fixed' | 'last';

export interface GenerateForm {
  prompt: string;
  negativePrompt: string;
  model: string;
  scheduler: SchedulerName;
  steps: number;
  guidance: number;
  seedMode: SeedMode;
  seed: number;
  width: number;
  height: number;
  batch: number;
  /** LoRA name → weight, for the chosen ones. */
  loras: Record<string, number>;
  embeddings: string[];
  /** img2img: an uploaded file or an earlier result, by its server name. */
  initImage?: { name: string; url: string };
  strength: number;
  /** The UNet's and text encoder's weights. */
  dtype: WeightDType;
  /** SDXL's size and crop conditioning, as a PNG or an earlier job carried them (no controls of its own). */
  sizeConditioning?: SizeConditioningParams;
}

/** The server's WEIGHT_DTYPES (engine/quantize.ts, which the page cannot import: it reads the CPU). */
export const WEIGHT_DTYPES = ['fp32', 'q8'] as const;
export type WeightDType = (typeof WEIGHT_DTYPES)[number];

/** The generate job's SDXL fields. */
export interface SizeConditioningParams {
  originalSize?: { width: number; height: number };
  targetSize?: { width: number; height: number };
  cropTopLeft?: { top: number; left: number };
}

export const INITIAL_FORM: GenerateForm = {
  prompt: '',
  negativePrompt: '',
  model: '',
  scheduler: 'ddim',
  steps: 20,
  guidance: 7.5,
  seedMode: 'random',
  seed: 0,
  width: NaN,
  height: NaN,
  batch: 1,
  loras: {},
  embeddings: [],
  strength: 0.6,
  dtype: 'fp32',
};

/** The job's params; unset numbers are left out so the server's defaults apply. */
export function formToParams(form: GenerateForm, lastSeed: number | undefined): Record<string, unknown> {
  const params: Record<string, unknown> = { prompt: form.prompt, scheduler: form.scheduler };
  if (form.negativePrompt.trim()) params.negativePrompt = form.negativePrompt;
  if (form.model) params.model = form.model;
  const numbers: [string, number][] = [
    ['steps', form.steps],
    ['guidance', form.guidance],
    ['width', form.width],
    ['height', form.height],
    ['batch', form.batch],
  ];
  for (const [key, value] of numbers) if (Number.isFinite(value)) params[key] = value;
  const seed = form.seedMode === 'fixed' ? form.seed : form.seedMode === 'last' ? lastSeed : undefined;
  if (seed !== undefined && Number.isFinite(seed)) params.seed = seed;
  const loras = Object.entries(form.loras).map(([name, weight]) => ({ name, weight }));
  if (loras.length > 0) params.loras = loras;
  if (form.embeddings.length > 0) params.embeddings = form.embeddings;
  if (form.initImage) {
    params.initImage = form.initImage.name;
    params.strength = form.strength;
  }
  if (form.dtype !== 'fp32') params.dtype = form.dtype;
  Object.assign(params, form.sizeConditioning);
  return params;
}

/** The SDXL fields of a job's params, if it has any. */
function sizeConditioningParams(p: Record<string, unknown>): SizeConditioningParams | undefined {
  const picked = Object.fromEntries((['originalSize', 'targetSize', 'cropTopLeft'] as const).filter((k) => typeof p[k] === 'object' && p[k] !== null).map((k) => [k, p[k]]));
  return Object.keys(picked).length ? (picked as SizeConditioningParams) : undefined;
}

/** How the form's SDXL conditioning reads, for notices and the form. */
export function describeSizeConditioning(c: SizeConditioningParams): string {
  const size = (s: { width: number; height: number }) => `${s.width}x${s.height}`;
  return [
    c.originalSize && `original size ${size(c.originalSize)}`,
    c.targetSize && `target size ${size(c.targetSize)}`,
    c.cropTopLeft && `crop top ${c.cropTopLeft.top}, left ${c.cropTopLeft.left}`,
  ]
    .filter(Boolean)
    .join(', ');
}

/** The seed a finished job used (the server picks one when the request had none). */
export function jobSeed(job: Job): number | undefined {
  const { info, params } = job;
  const candidates = [info.seed, Array.isArray(info.seeds) ? info.seeds[0] : undefined, Array.isArray(info.all_seeds) ? info.all_seeds[0] : undefined, params.seed];
  return candidates.find((s): s is number => typeof s === 'number');
}

/** "Use these settings": the form as it was for `job`, with its seed fixed. */
export function jobToForm(job: Job, current: GenerateForm): GenerateForm {
  const p = job.params;
  const num = (v: unknown, fallback: number) => (typeof v === 'number' ? v : fallback);
  const loras: Record<string, number> = {};
  if (Array.isArray(p.loras)) for (const l of p.loras as { name: string; weight?: number }[]) loras[l.name] = l.weight ?? 1;
  const seed = jobSeed(job);
  return {
    ...current,
    prompt: typeof p.prompt === 'string' ? p.prompt : current.prompt,
    negativePrompt: typeof p.negativePrompt === 'string' ? p.negativePrompt : '',
    model: typeof p.model === 'string' ? p.model : current.model,
    scheduler: typeof p.scheduler === 'string' ? (p.scheduler as SchedulerName) : current.scheduler,
    steps: num(p.steps, current.steps),
    guidance: num(p.guidance, current.guidance),
    seedMode: seed === undefined ? 'random' : 'fixed',
    seed: seed ?? current.seed,
    width: num(p.width ?? job.info.width, current.width),
    height: num(p.height ?? job.info.height, current.height),
    batch: num(p.batch, 1),
    loras,
    embeddings: Array.isArray(p.embeddings) ? (p.embeddings as string[]) : [],
    strength: num(p.strength, current.strength),
    dtype: (WEIGHT_DTYPES as readonly unknown[]).includes(p.dtype) ? (p.dtype as WeightDType) : 'fp32',
    sizeConditioning: sizeConditioningParams(p),
  };
}

/** A PNG's `parameters` text (Nuri's or AUTOMATIC1111's) applied to the form; unknown models are kept out. */
export function parametersToForm(text: string, current: GenerateForm, models: string[]): { form: GenerateForm; notes: string[] } {
  const p: GenerationParameters = parseParameters(text);
  const notes: string[] = [];
  const form: GenerateForm = { ...current, prompt: p.prompt, negativePrompt: p.negativePrompt ?? '' };
  if (p.steps !== undefined) form.steps = p.steps;
  if (p.guidance !== undefined) form.guidance = p.guidance;
  if (p.seed !== undefined) [form.seedMode, form.seed] = ['fixed', p.seed];
  if (p.width !== undefined && p.height !== undefined) [form.width, form.height] = [p.width, p.height];
  if (p.sampler !== undefined) {
    const scheduler = samplerFromLabel(p.sampler);
    if (scheduler) form.scheduler = scheduler;
    else notes.push(`sampler "${p.sampler}" is not one of Nuri's; kept ${current.scheduler}`);
  }
  if (p.model !== undefined) {
    if (models.includes(p.model)) form.model = p.model;
    else notes.push(`model "${p.model}" is not on this server; kept ${current.model || 'the default'}`);
  }
  // Weights and SDXL conditioning are the picture's too: without them a remake differs.
  const dtype = p.dtype ?? 'fp32';
  if ((WEIGHT_DTYPES as readonly string[]).includes(dtype)) form.dtype = dtype as WeightDType;
  else notes.push(`weight dtype "${dtype}" is not one of Nuri's; kept ${current.dtype}`);
  const c = p.sizeConditioning;
  const size = (pair: readonly [number, number] | undefined) => pair && { width: pair[1], height: pair[0] };
  form.sizeConditioning = c && sizeConditioningParams({ originalSize: size(c.originalSize), targetSize: size(c.targetSize), cropTopLeft: c.cropTopLeft && { top: c.cropTopLeft[0], left: c.cropTopLeft[1] } });
  if (form.sizeConditioning) notes.push(`SDXL ${describeSizeConditioning(form.sizeConditioning)}`);
  if (c?.negativeOriginalSize || c?.negativeTargetSize || c?.negativeCropTopLeft) notes.push("the negative size conditioning is not a server setting; the unconditional half repeats the picture's");
  return { form, notes };
}
