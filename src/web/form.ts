// Small form helpers the pages share.

import type { ApiError } from './api.ts';

/** The server's refusal as an error beside the field it names, or as a general one. */
export function fieldErrors(refused: ApiError | undefined, fields: readonly string[]): { errors: Record<string, string>; general?: string } {
  if (!refused) return { errors: {} };
  if (refused.field && fields.includes(refused.field)) return { errors: { [refused.field]: refused.message } };
  return { errors: {}, general: refused.message };
}

/** In a textarea, Enter submits the form and Shift+Enter starts a new line. */
export function submitOnEnter(e: KeyboardEvent): void {
  if (e.key !== 'Enter' || e.shiftKey || e.isComposing) return;
  e.preventDefault();
  (e.currentTarget as HTMLTextAreaElement).form?.requestSubmit();
}
