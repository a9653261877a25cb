// A1111's settings (GET|POST /sdapi/v1/options). Three act on generation: `sd_model_checkpoint`
// (the model of later requests without an override), `sd_vae` (their VAE) and
// `CLIP_stop_at_last_layers` (clip skip).
// Every other option is kept and echoed back, as clients read back what they set.

import { z } from 'zod';
import { DEFAULT_MODEL } from './catalog.ts';
import { SdapiError, validationError } from './errors.ts';

export const CLIP_SKIP_OPTION = 'CLIP_stop_at_last_layers';
export const MODEL_OPTION = 'sd_model_checkpoint';
/**
 * A VAE by its sd-vae name, or A1111's "Automatic" (the checkpoint's own VAE file when it has one:
 * vaeNearCheckpoint; else the model's VAE) and "None" (the model's VAE).
 */
export const VAE_OPTION = 'sd_vae';
export const AUTOMATIC_VAE = 'Automatic';
export const NO_VAE = 'None';

const clipSkip = z.number().int().min(1).max(12);

/** The options that change generation; everything else is stored as sent. */
const ACTIVE = z.object({
  [MODEL_OPTION]: z.string().min(1).optional(),
  [CLIP_SKIP_OPTION]: clipSkip.optional(),
});

export class SdapiOptions {
  private readonly values: Record<string, unknown> = {
    [MODEL_OPTION]: DEFAULT_MODEL,
    [CLIP_SKIP_OPTION]: 1,
    samples_format: 'png',
    [VAE_OPTION]: AUTOMATIC_VAE,
    show_progress_every_n_steps: 1,
    live_previews_enable: true,
    eta_ddim: 0,
  };

  all(): Record<string, unknown> {
    return { ...this.values };
  }

  get model(): string {
    return this.values[MODEL_OPTION] as string;
  }

  /** As sent: translate.ts resolves it per request, as VAEs come and go from the folder. */
  get vae(): unknown {
    return this.values[VAE_OPTION];
  }

  get clipSkip(): number {
    return this.values[CLIP_SKIP_OPTION] as number;
  }

  /**
   * Validates then applies a POST body; `resolveModel` maps what the client sent to a registry
   * name (undefined: unknown model, answered 404 as A1111's txt2img does).
   */
  async update(body: unknown, resolveModel: (name: string) => Promise<string | undefined>): Promise<void> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw SdapiError.invalid([], 'must be a JSON object of option names and values', 'type_error.dict');
    const active = ACTIVE.safeParse(body);
    if (!active.success) throw validationError(active.error);
    const updates: Record<string, unknown> = { ...(body as Record<string, unknown>) };
    const wanted = active.data[MODEL_OPTION];
    if (wanted !== undefined) {
      const name = await resolveModel(wanted);
      if (!name) throw new SdapiError(404, `model ${JSON.stringify(wanted)} not found`);
      updates[MODEL_OPTION] = name;
    }
    Object.assign(this.values, updates);
  }
}
