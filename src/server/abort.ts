// How a runner stops a cancelled job: by throwing an AbortError between two steps.

/** The error a runner rejects with when its job was cancelled. */
export function abortError(): Error {
  const error = new Error('the job was cancelled');
  error.name = 'AbortError';
  return error;
}

export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortError();
}
