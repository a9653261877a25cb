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
  /** Further fields under their A1111 names, e.g. { 'Clip skip': 2 }. Parsed back as strings. */
  extra?: Record<string, string | number>;
}

const NEGATIVE_PREFIX = 'Negative prompt:';
const KNOWN_KEYS = new Set(['Steps', 'Sampler', 'CFG scale', 'Seed', 'Size', 'Model hash', 'Model', 'Denoising strength']);
// A1111's re_param_code: `Key: value` or `Key: "json string"`, comma-separated.
const FIELD = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;
const KEY = /^\w[\w \-/]+$/;

export function formatParameters(p: GenerationParameters): string {
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
  ];
  for (const [key, value] of Object.entries(p.extra ?? {})) {
    if (!KEY.test(key) || KNOWN_KEYS.has(key)) throw new Error(`formatParameters: bad extra key ${JSON.stringify(key)}`);
    fields.push([key, value]);
  }
  const lines = [p.prompt];
  if (p.negativePrompt) lines.push(`${NEGATIVE_PREFIX} ${p.negativePrompt}`);
  const settings = fields
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}: ${quote(String(value))}`)
    .join(', ');
  if (settings) lines.push(settings);
  return lines.join('\n');
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
    else extra[key] = value;
  }
  if (Object.keys(extra).length > 0) result.extra = extra;
  return result;
}
