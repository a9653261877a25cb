// Generation parameters as text, in AUTOMATIC1111's format — the one the Stable Diffusion web UIs
// write into a PNG's `parameters` chunk and read back ("PNG Info"):
//
//   a photo of a cat
//   Negative prompt: blurry
//   Steps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 512x768, Model: nuri-emoji
//
// Values holding a comma, colon or newline are JSON-quoted.

export interface GenerationParameters {
  prompt: string;
  negativePrompt?: string;
  steps?: number;
  sampler?: string;
  /** Classifier-free guidance scale ("CFG scale"). */
  guidance?: number;
  seed?: number;
  width?: number;
  height?: number;
  model?: string;
  modelHash?: string;
  /** img2img strength ("Denoising strength"). */
  denoisingStrength?: number;
  /** The UNet's and text encoder's weights when not fp32, e.g. "q8" ("Weight dtype"). */
  dtype?: string;
  /** SDXL's size and crop conditioning where given, in the library's order (sizes height first). */
  sizeConditioning?: SizeConditioning;
  /** Further fields under their A1111 names, e.g. { 'Clip skip': 2 }. Parsed back as strings. */
  extra?: Record<string, string | number>;
}

/**
 * SDXL's micro-conditioning, as generate() takes it and a PNG records it. Sizes are [height, width]
 * in pixels, crops [top, left] — height first, as diffusers' tuples.
 */
export interface SizeConditioning {
  /** The size the picture "came from" (default: the output size). */
  originalSize?: readonly [number, number];
  /** Where the picture was cropped from it (default: [0, 0], uncropped). */
  cropTopLeft?: readonly [number, number];
  /** The size to aim for (default: the output size). */
  targetSize?: readonly [number, number];
  /**
   * The unconditional half's own sizes; diffusers uses them only when both negativeOriginalSize
   * and negativeTargetSize are given, otherwise that half repeats the conditional one.
   */
  negativeOriginalSize?: readonly [number, number];
  negativeCropTopLeft?: readonly [number, number];
  negativeTargetSize?: readonly [number, number];
}

// A1111 writes none of these (its crop is a setting, its sizes the output's): the keys follow Nuri's
// flags, and the values are written as those flags take them (WxH; top,left).
const SIZE_KEYS: [keyof SizeConditioning, string, 'size' | 'crop'][] = [
  ['originalSize', 'Original size', 'size'],
  ['targetSize', 'Target size', 'size'],
  ['cropTopLeft', 'Crop top left', 'crop'],
  ['negativeOriginalSize', 'Negative original size', 'size'],
  ['negativeTargetSize', 'Negative target size', 'size'],
  ['negativeCropTopLeft', 'Negative crop top left', 'crop'],
];
const DTYPE_KEY = 'Weight dtype';

const NEGATIVE_PREFIX = 'Negative prompt:';
const KNOWN_KEYS = new Set(['Steps', 'Sampler', 'CFG scale', 'Seed', 'Size', 'Model hash', 'Model', 'Denoising strength', DTYPE_KEY, ...SIZE_KEYS.map(([, key]) => key)]);
// A1111's re_param_code: `Key: value` or `Key: "json string"`, comma-separated.
const FIELD = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;
const KEY = /^\w[\w \-/]+$/;

export function formatParameters(p: GenerationParameters): string {
  const lines = [p.prompt];
  if (p.negativePrompt) lines.push(`${NEGATIVE_PREFIX} ${p.negativePrompt}`);
  const settings = settingsFields(p)
    .map(([key, value]) => `${key}: ${quote(value)}`)
    .join(', ');
  if (settings) lines.push(settings);
  return lines.join('\n');
}

/** The settings line's fields in order, under their infotext names, values unquoted. */
export function settingsFields(p: GenerationParameters): [string, string][] {
  const size = p.width !== undefined && p.height !== undefined ? `${p.width}x${p.height}` : undefined;
  const fields: [string, string | number | undefined][] = [
    ['Steps', p.steps],
    ['Sampler', p.sampler],
    ['CFG scale', p.guidance],
    ['Seed', p.seed],
    ['Size', size],
    ['Model hash', p.modelHash],
    ['Model', p.model],
    ['Denoising strength', p.denoisingStrength],
    [DTYPE_KEY, p.dtype === 'fp32' ? undefined : p.dtype],
  ];
  for (const [field, key, kind] of SIZE_KEYS) {
    const pair = p.sizeConditioning?.[field];
    if (pair) fields.push([key, kind === 'size' ? `${pair[1]}x${pair[0]}` : `${pair[0]},${pair[1]}`]);
  }
  for (const [key, value] of Object.entries(p.extra ?? {})) {
    if (!KEY.test(key) || KNOWN_KEYS.has(key)) throw new Error(`formatParameters: bad extra key ${JSON.stringify(key)}`);
    fields.push([key, value]);
  }
  return fields.filter((f): f is [string, string | number] => f[1] !== undefined).map(([key, value]) => [key, String(value)]);
}

function quote(value: string): string {
  return /[,:\n]/.test(value) ? JSON.stringify(value) : value;
}

function unquote(value: string): string {
  if (value.length < 2 || !value.startsWith('"') || !value.endsWith('"')) return value;
  try {
    return JSON.parse(value) as string;
  } catch {
    return value;
  }
}

/** Inverse of formatParameters; reads text written by the web UIs too (unknown fields go to `extra`). */
export function parseParameters(text: string): GenerationParameters {
  const lines = text.trim().split(/\r?\n/);
  let settingsLine = lines.length > 1 || lines[0].startsWith('Steps: ') ? lines[lines.length - 1] : '';
  const fields = [...settingsLine.matchAll(FIELD)];
  // Like A1111: a last line with fewer than three fields is still prompt text (unless it is ours, led by Steps).
  if (fields.length < 3 && !settingsLine.startsWith('Steps: ')) settingsLine = '';
  const promptLines = settingsLine ? lines.slice(0, -1) : lines;

  const prompt: string[] = [];
  const negative: string[] = [];
  for (const line of promptLines) {
    if (negative.length === 0 && line.startsWith(NEGATIVE_PREFIX)) negative.push(line.slice(NEGATIVE_PREFIX.length).trim());
    else (negative.length > 0 ? negative : prompt).push(line);
  }

  const result: GenerationParameters = { prompt: prompt.join('\n') };
  if (negative.length > 0) result.negativePrompt = negative.join('\n');
  const extra: Record<string, string> = {};
  for (const [, key, raw] of settingsLine ? fields : []) {
    const value = unquote(raw.trim());
    const size = /^(\d+)x(\d+)$/.exec(value);
    const number = Number(value);
    const isNumber = value !== '' && Number.isFinite(number);
    if (key === 'Steps' && isNumber) result.steps = number;
    else if (key === 'Sampler') result.sampler = value;
    else if (key === 'CFG scale' && isNumber) result.guidance = number;
    else if (key === 'Seed' && isNumber) result.seed = number;
    else if (key === 'Size' && size) [result.width, result.height] = [Number(size[1]), Number(size[2])];
    else if (key === 'Model hash') result.modelHash = value;
    else if (key === 'Model') result.model = value;
    else if (key === 'Denoising strength' && isNumber) result.denoisingStrength = number;
    else if (key === DTYPE_KEY && value) result.dtype = value;
    else if (!readSizeConditioning(result, key, value)) extra[key] = value;
  }
  if (Object.keys(extra).length > 0) result.extra = extra;
  return result;
}

/** An SDXL size or crop field into `result.sizeConditioning`; false when `key` is none or the value does not read. */
function readSizeConditioning(result: GenerationParameters, key: string, value: string): boolean {
  const entry = SIZE_KEYS.find(([, k]) => k === key);
  const pair = entry && (entry[2] === 'size' ? /^(\d+)x(\d+)$/ : /^(\d+),(\d+)$/).exec(value);
  if (!entry || !pair) return false;
  const [a, b] = [Number(pair[1]), Number(pair[2])];
  result.sizeConditioning = { ...result.sizeConditioning, [entry[0]]: entry[2] === 'size' ? [b, a] : [a, b] };
  return true;
}
