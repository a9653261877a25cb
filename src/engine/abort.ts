// Cancelling long work: every long library call (sampling, inversion, training) takes an
// AbortSignal, checks it between steps, and stops with an AbortError — the name `fetch` and the
// DOM use, so callers can tell a cancelled run from a failed one with `error.name === 'AbortError'`.

export class AbortError extends Error {
  override readonly name = 'AbortError';
  constructor(
    message = 'the operation was aborted',
    /** How far the work got: steps completed, and for training the checkpoint it left to resume from. */
    readonly progress: { step?: number; checkpoint?: string } = {},
  ) {
    super(message);
  }
}

/** Throws an AbortError when `signal` has been aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, what = 'the operation'): void {
  if (signal?.aborted) throw new AbortError(`${what} was aborted`);
}

export function isAbortError(error: unknown): error is Error {
  return error instanceof Error && error.name === 'AbortError';
}
