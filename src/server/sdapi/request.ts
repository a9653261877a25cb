// The request bodies of A1111's POST /sdapi/v1/txt2img and /img2img: its field names, its defaults
// (those of modules/api/models.py and StableDiffusionProcessing), every field optional and
// nullable as there. Fields Nuri has no equivalent for are accepted and listed in `notes`.

import { z } from 'zod';
import { MAX_SEED } from '../schemas.ts';


/** A field A1111 declares Optional: null or absent takes the default. */
function optional<T extends z.ZodType>(schema: T, fallback: z.output<T>) {
  return schema.nullish().transform((value): z.output<T> => value ?? fallback);
}
function nullable<T extends z.ZodType>(schema: T) {
  return schema.nullish().transform((value) => value ?? null);
}

const integer = () => z.number().int();

const common = {
  prompt: optional(z.string(), ''),
  negative_prompt: optional(z.string(), ''),
  styles: optional(z.array(z.string()), []),
  seed: optional(integer().min(-1).max(MAX_SEED), -1),
  subseed: optional(integer().min(-1).max(MAX_SEED), -1),
  subseed_strength: optional(z.number(), 0),
  seed_resize_from_h: optional(integer(), -1),
  seed_resize_from_w: optional(integer(), -1),
  sampler_name: nullable(z.string()),
  scheduler: nullable(z.string()),
  batch_size: optional(integer().min(1).max(64), 1),
  n_iter: optional(integer().min(1).max(100), 1),
  steps: optional(integer().min(1).max(1000), 50),
  cfg_scale: optional(z.number().min(0).max(100), 7),
  /** Null: the model's own size (A1111 says 512; Nuri's bundled model is 64 px). */
  width: nullable(integer().min(8).multipleOf(8, 'must be a multiple of 8')),
  height: nullable(integer().min(8).multipleOf(8, 'must be a multiple of 8')),
  restore_faces: nullable(z.boolean()),
  tiling: nullable(z.boolean()),
  do_not_save_samples: optional(z.boolean(), false),
  do_not_save_grid: optional(z.boolean(), false),
  eta: nullable(z.number().min(0).max(1)),
  s_min_uncond: nullable(z.number()),
  s_churn: nullable(z.number()),
  s_tmax: nullable(z.number()),
  s_tmin: nullable(z.number()),
  s_noise: nullable(z.number()),
  override_settings: optional(z.record(z.string(), z.unknown()), {}),
  override_settings_restore_afterwards: optional(z.boolean(), true),
  refiner_checkpoint: nullable(z.string()),
  refiner_switch_at: nullable(z.number()),
  disable_extra_networks: optional(z.boolean(), false),
  comments: nullable(z.record(z.string(), z.unknown())),
  sampler_index: optional(z.string(), 'Euler'),
  script_name: nullable(z.string()),
  script_args: optional(z.array(z.unknown()), []),
  send_images: optional(z.boolean(), true),
  save_images: optional(z.boolean(), false),
  alwayson_scripts: optional(z.record(z.string(), z.unknown()), {}),
  force_task_id: nullable(z.string()),
  infotext: nullable(z.string()),
};

export const txt2imgRequest = z.object({
  ...common,
  enable_hr: optional(z.boolean(), false),
  denoising_strength: nullable(z.number().min(0).max(1)),
  firstphase_width: optional(integer(), 0),
  firstphase_height: optional(integer(), 0),
  hr_scale: optional(z.number(), 2),
  hr_upscaler: nullable(z.string()),
  hr_second_pass_steps: optional(integer(), 0),
  hr_resize_x: optional(integer(), 0),
  hr_resize_y: optional(integer(), 0),
  hr_checkpoint_name: nullable(z.string()),
  hr_sampler_name: nullable(z.string()),
  hr_scheduler: nullable(z.string()),
  hr_prompt: optional(z.string(), ''),
  hr_negative_prompt: optional(z.string(), ''),
  firstpass_image: nullable(z.string()),
});

export const img2imgRequest = z.object({
  ...common,
  init_images: z.array(z.string().min(1, 'must be a base64 image')).min(1, 'needs one base64 image'),
  resize_mode: optional(integer().min(0).max(3), 0),
  denoising_strength: optional(z.number().gt(0, 'must be above 0').max(1), 0.75),
  image_cfg_scale: nullable(z.number()),
  mask: nullable(z.string()),
  mask_blur_x: optional(integer(), 4),
  mask_blur_y: optional(integer(), 4),
  mask_blur: nullable(integer()),
  mask_round: optional(z.boolean(), true),
  inpainting_fill: optional(integer(), 0),
  inpaint_full_res: optional(z.union([z.boolean(), integer()]), true),
  inpaint_full_res_padding: optional(integer(), 0),
  inpainting_mask_invert: optional(integer(), 0),
  initial_noise_multiplier: nullable(z.number()),
  latent_mask: nullable(z.string()),
  include_init_images: optional(z.boolean(), false),
});

export type Txt2ImgRequest = z.output<typeof txt2imgRequest>;
export type Img2ImgRequest = z.output<typeof img2imgRequest>;
export type A1111Request = Txt2ImgRequest | (Img2ImgRequest & { enable_hr?: undefined });

/**
 * Numbers sent as strings ("7", "0.5"), which pydantic's lax mode turns into numbers for A1111, are
 * numbers here too. Only fields declared as numbers are touched.
 */
export function coerceNumbers(body: Record<string, unknown>, schema: z.ZodObject): Record<string, unknown> {
  const out = { ...body };
  for (const [field, value] of Object.entries(body)) {
    if (typeof value !== 'string' || value.trim() === '' || !Number.isFinite(Number(value)) || !(field in schema.shape)) continue;
    if (schema.shape[field].safeParse(Number(value)).success && !schema.shape[field].safeParse(value).success) out[field] = Number(value);
  }
  return out;
}

/** Whether a field holds something other than A1111's do-nothing value, i.e. asks for a feature. */
const UNSUPPORTED: Record<string, (value: unknown) => boolean> = {
  styles: (v) => Array.isArray(v) && v.length > 0,
  subseed_strength: (v) => typeof v === 'number' && v > 0,
  seed_resize_from_h: (v) => typeof v === 'number' && v > 0,
  seed_resize_from_w: (v) => typeof v === 'number' && v > 0,
  restore_faces: (v) => v === true,
  tiling: (v) => v === true,
  s_min_uncond: (v) => typeof v === 'number' && v !== 0,
  s_churn: (v) => typeof v === 'number' && v !== 0,
  s_tmin: (v) => typeof v === 'number' && v !== 0,
  s_tmax: (v) => typeof v === 'number' && v !== 0 && Number.isFinite(v),
  s_noise: (v) => typeof v === 'number' && v !== 1,
  refiner_checkpoint: (v) => typeof v === 'string' && v !== '' && v !== 'None',
  script_name: (v) => typeof v === 'string' && v !== '' && v !== 'None',
  // The ControlNet extension's script is read (sdapi/controlnet.ts); others are not.
  alwayson_scripts: (v) => typeof v === 'object' && v !== null && Object.keys(v).some((name) => name.toLowerCase() !== 'controlnet'),
  infotext: (v) => typeof v === 'string' && v !== '',
  enable_hr: (v) => v === true,
  firstpass_image: (v) => typeof v === 'string' && v !== '',
  image_cfg_scale: (v) => typeof v === 'number',
  latent_mask: (v) => typeof v === 'string' && v !== '',
  initial_noise_multiplier: (v) => typeof v === 'number' && v !== 1,
};

/** Notes for the fields asked of Nuri that it does not do, and for fields A1111 does not know. */
export function unsupportedFieldNotes(raw: Record<string, unknown>, known: z.ZodObject): string[] {
  const notes: string[] = [];
  for (const [field, value] of Object.entries(raw)) {
    if (!(field in known.shape)) notes.push(`${field} is not an A1111 API field and was ignored`);
    else if (UNSUPPORTED[field]?.(value)) notes.push(`${field} is not supported and was ignored`);
  }
  return notes;
}
