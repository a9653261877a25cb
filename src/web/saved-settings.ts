// The Generate form kept in the browser's localStorage, so a reload (or tomorrow's visit) starts
// where the user left off. Pictures are kept by their server name and a URL the page can show
// again (data: URLs and result URLs; blob: URLs die with the page); the mask as run lengths.

import { type ControlUnitForm, newControlUnit } from './controlnet-settings.ts';
import { type GenerateForm, INITIAL_FORM, type SizeConditioningParams, WEIGHT_DTYPES } from './generate-settings.ts';
import { decodeMask, encodeMask } from './mask.ts';

export const STORAGE_KEY = 'nuri.studio.generate';

export interface SavedSettings {
  form: GenerateForm;
  /** The user chose the size (else it follows the model's). */
  sizeTouched: boolean;
  /** The user chose the steps or guidance (else they follow the model's). */
  samplingTouched: boolean;
}

type Picture = { name: string; url: string } | undefined;

/** Writes the form; when the pictures do not fit the storage quota, the settings are kept without them. */
export function saveSettings(storage: Pick<Storage, 'setItem'>, saved: SavedSettings): void {
  const { form } = saved;
  const keep = (p: Picture, withPictures: boolean) => (p && withPictures && !p.url.startsWith('blob:') ? p : undefined);
  const text = (withPictures: boolean) =>
    JSON.stringify({
      ...form,
      sizeTouched: saved.sizeTouched,
      samplingTouched: saved.samplingTouched,
      // JSON has no NaN: an emptied number box is kept as null.
      width: Number.isFinite(form.width) ? form.width : null,
      height: Number.isFinite(form.height) ? form.height : null,
      initImage: keep(form.initImage, withPictures),
      mask: form.mask && encodeMask(form.mask),
      controlnets: form.controlnets.map((u) => ({ ...u, image: keep(u.image, withPictures) })),
    });
  try {
    storage.setItem(STORAGE_KEY, text(true));
  } catch {
    try {
      storage.setItem(STORAGE_KEY, text(false));
    } catch {
      // Storage full or refused (private mode): the page still works, it just forgets on reload.
    }
  }
}

/** The saved form over `base`; each field is taken only when it has the type the form holds there. */
export function loadSettings(storage: Pick<Storage, 'getItem'>, base: GenerateForm = INITIAL_FORM): SavedSettings {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(storage.getItem(STORAGE_KEY) ?? 'null') as Record<string, unknown>;
  } catch {
    raw = {};
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { form: base, sizeTouched: false, samplingTouched: false };
  const form: GenerateForm = { ...base };
  const mutable = form as unknown as Record<string, unknown>;
  for (const [key, value] of Object.entries(base)) {
    const saved = raw[key];
    if (typeof value === 'number' && saved === null) mutable[key] = NaN;
    else if (sameShape(value, saved)) mutable[key] = saved;
  }
  if (!(WEIGHT_DTYPES as readonly unknown[]).includes(form.dtype)) form.dtype = base.dtype;
  form.sizeConditioning = sizeConditioning(raw.sizeConditioning);
  form.initImage = picture(raw.initImage);
  form.mask = decodeMask(raw.mask);
  form.controlnets = Array.isArray(raw.controlnets) ? raw.controlnets.flatMap((u) => controlUnit(u)) : [];
  return { form, sizeTouched: raw.sizeTouched === true, samplingTouched: raw.samplingTouched === true };
}

function sameShape(value: unknown, saved: unknown): boolean {
  if (Array.isArray(value)) return Array.isArray(saved) && saved.every((v) => typeof v === 'string');
  if (typeof value === 'object' && value !== null) {
    return typeof saved === 'object' && saved !== null && !Array.isArray(saved) && Object.values(saved).every((v) => typeof v === 'number');
  }
  return typeof value === typeof saved;
}

/** SDXL's size and crop conditioning, each part only when all its numbers are there. */
function sizeConditioning(value: unknown): SizeConditioningParams | undefined {
  const saved = (typeof value === 'object' && value !== null ? value : {}) as Record<string, Record<string, unknown> | undefined>;
  const numbers = (key: string, names: string[]) => (names.every((n) => typeof saved[key]?.[n] === 'number') ? Object.fromEntries(names.map((n) => [n, saved[key]![n]])) : undefined);
  const [size, crop] = [['width', 'height'], ['top', 'left']];
  const parts = {
    originalSize: numbers('originalSize', size),
    targetSize: numbers('targetSize', size),
    cropTopLeft: numbers('cropTopLeft', crop),
    negativeOriginalSize: numbers('negativeOriginalSize', size),
    negativeTargetSize: numbers('negativeTargetSize', size),
    negativeCropTopLeft: numbers('negativeCropTopLeft', crop),
  };
  const kept = Object.fromEntries(Object.entries(parts).filter(([, v]) => v !== undefined));
  return Object.keys(kept).length > 0 ? (kept as SizeConditioningParams) : undefined;
}

function picture(value: unknown): Picture {
  const p = value as { name?: unknown; url?: unknown } | undefined;
  return typeof p?.name === 'string' && typeof p.url === 'string' ? { name: p.name, url: p.url } : undefined;
}

function controlUnit(value: unknown): ControlUnitForm[] {
  if (typeof value !== 'object' || value === null) return [];
  const saved = value as Record<string, unknown>;
  const unit = newControlUnit(typeof saved.model === 'string' ? saved.model : '');
  const mutable = unit as unknown as Record<string, unknown>;
  for (const [key, dflt] of Object.entries(unit)) if (typeof saved[key] === typeof dflt) mutable[key] = saved[key];
  return [{ ...unit, image: picture(saved.image) }];
}
