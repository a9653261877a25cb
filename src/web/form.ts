// Small form helpers the pages share.

import type { ApiError } from './api.ts';

/**
 * The server's refusal as an error beside the field it names, or as a general one. A field with
 * parts (a ControlNet unit's `start`) also gets the error under its path, "controlnet.0.start".
 */
export function fieldErrors(refused: ApiError | undefined, fields: readonly string[]): { errors: Record<string, string>; general?: string } {
  if (!refused) return { errors: {} };
  if (refused.field && fields.includes(refused.field)) return { errors: { [refused.field]: refused.message, ...(refused.path ? { [refused.path]: refused.message } : {}) } };
  return { errors: {}, general: refused.message };
}

/**
 * The field a failed job's error is about: the runner checks what only the model knows (a size
 * its layers cannot make, a swap whose words have different token counts) and names the option.
 */
export function failureField(message: string): string | undefined {
  // A ControlNet that cannot be loaded ("ControlNet not found: …/controlnet/NAME.safetensors").
  if (/controlnet/i.test(message)) return 'controlnet';
  if (/word swap|target/i.test(message)) return 'target';
  if (/^reweight/i.test(message)) return 'reweight';
  if (/local.blend/i.test(message)) return 'localBlend';
  if (/\bwidth\b/i.test(message)) return 'width';
  if (/\bheight\b/i.test(message)) return 'height';
  return undefined;
}

/** The server's refusal, or a failed job's reason, beside the field it names when the page shows that field. */
export function jobErrors(state: { refused?: ApiError; job?: { status: string; error: string | null } }, fields: readonly string[]): { errors: Record<string, string>; general?: string } {
  const failed = state.job?.status === 'failed' ? state.job.error ?? 'the job failed' : undefined;
  if (!failed) return fieldErrors(state.refused, fields);
  const field = failureField(failed);
  return field && fields.includes(field) ? { errors: { [field]: failed } } : { errors: {}, general: failed };
}

/** In a textarea, Enter submits the form and Shift+Enter starts a new line. */
export function submitOnEnter(e: KeyboardEvent): void {
  if (e.key !== 'Enter' || e.shiftKey || e.isComposing) return;
  e.preventDefault();
  (e.currentTarget as HTMLTextAreaElement).form?.requestSubmit();
}
