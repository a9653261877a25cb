// Errors in the shapes A1111's FastAPI server answers with: request validation → 422
// {detail: [{loc, msg, type}]}; anything raised on purpose → {error, detail, body, errors}.

import type { FastifyReply } from 'fastify';
import type { z } from 'zod';

export interface ValidationDetail {
  loc: (string | number)[];
  msg: string;
  type: string;
}

/** An error with the HTTP status and headers to answer it with. */
export class SdapiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly validation?: ValidationDetail[],
  ) {
    super(message);
  }

  /** A 422 naming one field of the request body, as a failed pydantic check would. */
  static invalid(field: (string | number)[], msg: string, type = 'value_error'): SdapiError {
    return new SdapiError(422, `${field.join('.')}: ${msg}`, {}, [{ loc: ['body', ...field], msg, type }]);
  }
}

export function validationError(error: z.ZodError): SdapiError {
  const detail = error.issues.map((issue) => ({ loc: ['body', ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))], msg: issue.message, type: issue.code }));
  return validationDetails(detail);
}

/** A 422 listing every failed check, each at its `loc` (['body', field, …]). */
export function validationDetails(detail: ValidationDetail[]): SdapiError {
  return new SdapiError(422, detail.map((d) => `${d.loc.slice(1).join('.') || 'body'}: ${d.msg}`).join('; '), {}, detail);
}

/** Parses a body with a zod schema or throws the 422 A1111 clients expect. */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.output<T> {
  const result = schema.safeParse(body ?? {});
  if (!result.success) throw validationError(result.error);
  return result.data;
}

export function sendError(reply: FastifyReply, error: unknown): FastifyReply {
  if (!(error instanceof SdapiError)) throw error;
  reply.code(error.status).headers(error.headers);
  if (error.validation) return reply.send({ detail: error.validation });
  return reply.send({ error: error.status === 422 ? 'RequestValidationError' : 'HTTPException', detail: error.message, body: '', errors: error.message });
}
