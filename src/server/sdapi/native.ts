// The native `generate` schema (the server's, with its limits) checks what the A1111 layer made,
// so /sdapi/v1 and /api/v1 refuse the same things; a refusal names the A1111 field it came from.

import { DEFAULT_LIMITS, type ServerLimits, jobSchemas } from '../schemas.ts';
import { validationDetails } from './errors.ts';

/** Native param → the A1111 request field that set it. */
const A1111_FIELD: Record<string, (string | number)[]> = {
  model: ['override_settings', 'sd_model_checkpoint'],
  prompt: ['prompt'],
  negativePrompt: ['negative_prompt'],
  steps: ['steps'],
  scheduler: ['sampler_name'],
  guidance: ['cfg_scale'],
  eta: ['eta'],
  seed: ['seed'],
  width: ['width'],
  height: ['height'],
  batch: ['batch_size'],
  initImage: ['init_images', 0],
  strength: ['denoising_strength'],
  mask: ['mask'],
  maskBlur: ['mask_blur'],
  inpaintFill: ['inpainting_fill'],
  clipSkip: ['override_settings', 'CLIP_stop_at_last_layers'],
  loras: ['prompt'],
  embeddings: ['prompt'],
};

export type GenerateValidator = (params: Record<string, unknown>) => Record<string, unknown>;

export function generateValidator(limits: ServerLimits = DEFAULT_LIMITS): GenerateValidator {
  const schema = jobSchemas(limits).generate;
  return (params) => {
    const result = schema.safeParse(params);
    if (result.success) return result.data as Record<string, unknown>;
    const detail = result.error.issues.map((issue) => {
      const native = String(issue.path[0] ?? '');
      const loc = ['body', ...(A1111_FIELD[native] ?? [native])];
      return { loc, msg: issue.message, type: issue.code };
    });
    throw validationDetails(detail);
  };
}
