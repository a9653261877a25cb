// The Generate form as data, and its conversions: to job params, from a finished job's params
// ("use these settings"), and from a PNG's A1111 `parameters` text.

import { type GenerationParameters, parseParameters } from '../io/parameters.ts';
import type { InpaintFill, OUTPAINT_SIDES } from '../pipelines/inpaint.ts';
import type { SchedulerName } from '../schedulers/index.ts';
import { SAMPLER_LABELS, samplerFromLabel } from '../schedulers/labels.ts';
import { type Job, imageUrl } from './api.ts';
import { type ControlUnitForm, controlUnitFromParams, controlUnitFromText, controlUnitParams } from './controlnet-settings.ts';
import { type Mask, maskCoverage } from './mask.ts';

export type SeedMode = 'random' | 'fixed' | 'last';

export interface GenerateForm {
  prompt: string;
  negativePrompt: string;
  model: string;
  /** '' leaves the sampler to the model (its own scheduler config), as `nuri generate` does. */
  scheduler: SchedulerName | '';
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
  /** Inpainting over initImage: 1 where it is repainted (brushed, or an uploaded mask). */
  mask?: Mask;
  /** Gaussian σ of the mask's edge in pixels (the server's maskBlur). */
  maskBlur: number;
  /** What the masked area starts from below strength 1 (AUTOMATIC1111's "Masked content"). */
  inpaintFill: InpaintFill;
  /**
   * AUTOMATIC1111's "Only masked" inpaint area: the picture keeps its own size (the mask is painted
   * at it) and the part around the mask, with this padding in pixels, is drawn at width × height.
   */
  onlyMasked: boolean;
  onlyMaskedPadding: number;
  /** Outpainting: pixels added to initImage on each side, multiples of 8. */
  outpaint: Record<OutpaintSide, number>;
  controlnets: ControlUnitForm[];
  /** The UNet's and text encoder's weights. */
  dtype: WeightDType;
  /** A VAE of the server's models folder (vae/) that decodes instead of the model's own; '' for the model's. */
  vae: string;
  /** SDXL's size and crop conditioning, as a PNG or an earlier job carried them (no controls of its own). */
  sizeConditioning?: SizeConditioningParams;
}

/** The server's WEIGHT_DTYPES (engine/quantize.ts, which the page cannot import: it reads the CPU). */
export const WEIGHT_DTYPES = ['fp32', 'q8'] as const;
export type WeightDType = (typeof WEIGHT_DTYPES)[number];

/** The generate job's SDXL fields (the negative ones: the unconditional half's own, sizes given together). */
export interface SizeConditioningParams {
  originalSize?: { width: number; height: number };
  targetSize?: { width: number; height: number };
  cropTopLeft?: { top: number; left: number };
  negativeOriginalSize?: { width: number; height: number };
  negativeTargetSize?: { width: number; height: number };
  negativeCropTopLeft?: { top: number; left: number };
}
const SIZE_CONDITIONING_KEYS = ['originalSize', 'targetSize', 'cropTopLeft', 'negativeOriginalSize', 'negativeTargetSize', 'negativeCropTopLeft'] as const;

export type OutpaintSide = (typeof OUTPAINT_SIDES)[number];
/** Every side the server takes (a Record, so a side it adds is a type error here), as labelled. */
export const OUTPAINT_LABELS: Record<OutpaintSide, string> = { left: 'Left', right: 'Right', top: 'Top', bottom: 'Bottom' };
const OUTPAINT_SIDE_NAMES = Object.keys(OUTPAINT_LABELS) as OutpaintSide[];
/** AUTOMATIC1111's labels for the server's fills, in its order (inpainting_fill 0–3). */
export const INPAINT_FILL_LABELS: Record<InpaintFill, string> = { fill: 'fill', original: 'original', 'latent-noise': 'latent noise', 'latent-nothing': 'latent nothing' };

export const INITIAL_FORM: GenerateForm = {
  prompt: '',
  negativePrompt: '',
  model: '',
  scheduler: '',
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
  vae: '',
  maskBlur: 4,
  inpaintFill: 'original',
  onlyMasked: false,
  onlyMaskedPadding: 32,
  outpaint: { left: 0, right: 0, top: 0, bottom: 0 },
  controlnets: [],
};

/** Whether the mask repaints anything (an empty one is plain img2img). */
export function hasMask(form: GenerateForm): boolean {
  return form.mask !== undefined && maskCoverage(form.mask) > 0;
}

/** Whether the job inpaints "only masked": asked for, and not outpainting. */
export function onlyMaskedArea(form: GenerateForm): boolean {
  return form.onlyMasked && outpaintMargins(form) === undefined;
}

/** The margins that grow the canvas; none: not outpainting. */
export function outpaintMargins(form: GenerateForm): Partial<Record<OutpaintSide, number>> | undefined {
  // An emptied box (NaN) adds nothing.
  const sides = OUTPAINT_SIDE_NAMES.filter((side) => form.outpaint[side] > 0);
  return sides.length > 0 ? Object.fromEntries(sides.map((side) => [side, form.outpaint[side]])) : undefined;
}

/**
 * The job's params; unset numbers are left out so the server's defaults apply. `maskUpload` is the
 * server's name of the mask's PNG (the page uploads it first); every ControlNet unit has its image.
 */
export function formToParams(form: GenerateForm, lastSeed: number | undefined, maskUpload?: string): Record<string, unknown> {
  const params: Record<string, unknown> = { prompt: form.prompt };
  if (form.scheduler) params.scheduler = form.scheduler;
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
    if (maskUpload !== undefined && hasMask(form)) params.mask = maskUpload;
    const outpaint = outpaintMargins(form);
    if (outpaint) params.outpaint = outpaint;
    if (params.mask !== undefined || outpaint) {
      if (Number.isFinite(form.maskBlur)) params.maskBlur = form.maskBlur;
      params.inpaintFill = form.inpaintFill;
    }
    // Outpainting draws the grown canvas whole.
    if (onlyMaskedArea(form) && params.mask !== undefined) params.onlyMasked = Number.isFinite(form.onlyMaskedPadding) ? { padding: form.onlyMaskedPadding } : {};
  }
  if (form.dtype !== 'fp32') params.dtype = form.dtype;
  if (form.vae) params.vae = form.vae;
  Object.assign(params, form.sizeConditioning);
  const units = form.controlnets.filter((u): u is ControlUnitForm & { image: { name: string; url: string } } => u.image !== undefined);
  if (units.length > 0) params.controlnet = units.map(controlUnitParams);
  return params;
}

/** The SDXL fields of a job's params, if it has any. */
function sizeConditioningParams(p: Record<string, unknown>): SizeConditioningParams | undefined {
  const picked = Object.fromEntries(SIZE_CONDITIONING_KEYS.filter((k) => typeof p[k] === 'object' && p[k] !== null).map((k) => [k, p[k]]));
  return Object.keys(picked).length ? (picked as SizeConditioningParams) : undefined;
}

/** How the form's SDXL conditioning reads, for notices and the form. */
export function describeSizeConditioning(c: SizeConditioningParams): string {
  const size = (s: { width: number; height: number }) => `${s.width}x${s.height}`;
  return [
    c.originalSize && `original size ${size(c.originalSize)}`,
    c.targetSize && `target size ${size(c.targetSize)}`,
    c.cropTopLeft && `crop top ${c.cropTopLeft.top}, left ${c.cropTopLeft.left}`,
    c.negativeOriginalSize && `negative original size ${size(c.negativeOriginalSize)}`,
    c.negativeTargetSize && `negative target size ${size(c.negativeTargetSize)}`,
    c.negativeCropTopLeft && `negative crop top ${c.negativeCropTopLeft.top}, left ${c.negativeCropTopLeft.left}`,
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

/** What a finished job recorded in its first picture's infotext: the steps and guidance it ran, where its params left them to the server. */
function ranWith(job: Job): GenerationParameters | undefined {
  const infotexts = job.info.infotexts;
  return Array.isArray(infotexts) && typeof infotexts[0] === 'string' ? parseParameters(infotexts[0]) : undefined;
}

/** "seed 42 · 20 steps · DDIM · CFG 7.5 · 64×64 · model". */
export function settingsLine(job: Job): string {
  const p = job.params;
  const ran = ranWith(job);
  const steps = p.steps ?? ran?.steps;
  const guidance = p.guidance ?? ran?.guidance;
  const { width, height } = jobSize(job);
  const parts = [
    jobSeed(job) !== undefined && `seed ${jobSeed(job)}`,
    steps !== undefined && `${String(steps)} steps`,
    typeof p.scheduler === 'string' ? (SAMPLER_LABELS[p.scheduler as SchedulerName] ?? p.scheduler) : ran?.sampler,
    guidance !== undefined && `CFG ${String(guidance)}`,
    width > 1 && `${width}×${height}`,
    typeof p.model === 'string' && p.model,
    typeof p.initImage === 'string' && `${p.mask !== undefined ? 'inpaint' : p.outpaint !== undefined ? 'outpaint' : 'img2img'} ${String(p.strength ?? '')}`,
    Array.isArray(p.controlnet) && p.controlnet.length > 0 && `ControlNet ${p.controlnet.map((c: { model?: unknown }) => String(c.model)).join(', ')}`,
  ];
  return parts.filter(Boolean).join(' · ');
}

/** The size the job made (the server records it in info when the request left it to the model); 1×1 when neither says. */
export function jobSize(job: Job): { width: number; height: number } {
  const pick = (key: 'width' | 'height') => [job.params[key], job.info[key]].find((v): v is number => typeof v === 'number') ?? 1;
  return { width: pick('width'), height: pick('height') };
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
    // A job that named no sampler ran the model's own.
    scheduler: typeof p.scheduler === 'string' ? (p.scheduler as SchedulerName) : '',
    steps: num(p.steps ?? ranWith(job)?.steps, current.steps),
    guidance: num(p.guidance ?? ranWith(job)?.guidance, current.guidance),
    seedMode: seed === undefined ? 'random' : 'fixed',
    seed: seed ?? current.seed,
    width: num(p.width ?? job.info.width, current.width),
    height: num(p.height ?? job.info.height, current.height),
    batch: num(p.batch, 1),
    loras,
    embeddings: Array.isArray(p.embeddings) ? (p.embeddings as string[]) : [],
    strength: num(p.strength, current.strength),
    dtype: (WEIGHT_DTYPES as readonly unknown[]).includes(p.dtype) ? (p.dtype as WeightDType) : 'fp32',
    vae: typeof p.vae === 'string' ? p.vae : '',
    sizeConditioning: sizeConditioningParams(p),
    maskBlur: num(p.maskBlur, current.maskBlur),
    inpaintFill: typeof p.inpaintFill === 'string' && p.inpaintFill in INPAINT_FILL_LABELS ? (p.inpaintFill as InpaintFill) : current.inpaintFill,
    onlyMasked: typeof p.onlyMasked === 'object' && p.onlyMasked !== null,
    onlyMaskedPadding: num((p.onlyMasked as { padding?: unknown } | undefined)?.padding, current.onlyMaskedPadding),
    outpaint: { ...INITIAL_FORM.outpaint, ...(typeof p.outpaint === 'object' && p.outpaint !== null ? (p.outpaint as Partial<Record<OutpaintSide, number>>) : {}) },
    // Result images and uploads are served back by name: the starting picture and control images return.
    initImage: typeof p.initImage === 'string' ? { name: p.initImage, url: imageUrl(p.initImage) } : undefined,
    mask: undefined,
    controlnets: Array.isArray(p.controlnet) ? p.controlnet.map((c) => controlUnitFromParams(c as Record<string, unknown>, imageUrl)) : [],
  };
}

/**
 * A PNG's `parameters` text (Nuri's or AUTOMATIC1111's) applied to the form; unknown models and
 * VAEs are kept out. Inpainting's settings and the ControlNet units come back; their pictures cannot.
 */
export function parametersToForm(text: string, current: GenerateForm, models: string[], controlnets: string[] = [], vaes: string[] = []): { form: GenerateForm; notes: string[] } {
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
    else notes.push(`sampler "${p.sampler}" is not one of Nuri's; kept ${current.scheduler || "the model's own"}`);
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
  const crop = (pair: readonly [number, number] | undefined) => pair && { top: pair[0], left: pair[1] };
  form.sizeConditioning = c && sizeConditioningParams({
    originalSize: size(c.originalSize),
    targetSize: size(c.targetSize),
    cropTopLeft: crop(c.cropTopLeft),
    negativeOriginalSize: size(c.negativeOriginalSize),
    negativeTargetSize: size(c.negativeTargetSize),
    negativeCropTopLeft: crop(c.negativeCropTopLeft),
  });
  if (form.sizeConditioning) notes.push(`SDXL ${describeSizeConditioning(form.sizeConditioning)}`);
  if (p.denoisingStrength !== undefined) form.strength = p.denoisingStrength;
  const extra = p.extra ?? {};
  // "VAE: name" (Nuri's jobs) or "VAE: file.safetensors" (AUTOMATIC1111, `nuri generate --vae`); none: the model's own.
  const vae = extra.VAE === undefined ? '' : String(extra.VAE).replace(/\.(safetensors|pt|ckpt)$/i, '');
  form.vae = vaes.includes(vae) ? vae : '';
  if (vae && !form.vae) notes.push(`VAE "${extra.VAE}" is not on this server; the model's own decodes`);
  const blur = Number(extra['Mask blur']);
  if (extra['Mask blur'] !== undefined && Number.isFinite(blur)) form.maskBlur = blur;
  const fill = Object.entries(INPAINT_FILL_LABELS).find(([, label]) => label === String(extra['Masked content'] ?? '').toLowerCase());
  if (fill) form.inpaintFill = fill[0] as InpaintFill;
  // AUTOMATIC1111's "Inpaint area" and "Masked area padding" (absent: the whole picture).
  form.onlyMasked = String(extra['Inpaint area'] ?? '').toLowerCase() === 'only masked';
  const padding = Number(extra['Masked area padding']);
  if (form.onlyMasked && extra['Masked area padding'] !== undefined && Number.isInteger(padding) && padding >= 0) form.onlyMaskedPadding = padding;
  // "ControlNet 0", "ControlNet 1", … (older versions of the extension: one "ControlNet").
  const units = Object.entries(extra).filter(([key]) => /^ControlNet( \d+)?$/.test(key));
  if (units.length > 0) {
    form.controlnets = units.map(([key, value]) => {
      const read = controlUnitFromText(key, String(value), controlnets, controlnets[0] ?? '');
      notes.push(...read.notes);
      return read.unit;
    });
  }
  return { form, notes };
}
