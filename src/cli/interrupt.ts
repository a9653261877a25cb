// Ctrl-C for every long `nuri` command: the first one aborts the work between two steps (a
// training run saves its checkpoint first), the second quits at once; either way the process
// exits 130, as a shell's interrupted command does, so scripts can tell it from a finished run.

import { isAbortError } from '../engine/abort.ts';
import { interruptOnSigint } from '../training/trainer.ts';

/** Runs `work` with a signal that the first Ctrl-C aborts. */
export async function interruptible<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const interrupt = interruptOnSigint(() => console.error('\nstopping after this step (Ctrl-C again to quit at once)…'));
  try {
    return await work(interrupt.signal);
  } finally {
    interrupt.dispose();
  }
}

export const INTERRUPTED_EXIT_CODE = 130;

/** The line to print for an aborted run, or undefined when `error` is not an abort. */
export function interruptedMessage(error: unknown): string | undefined {
  if (!isAbortError(error)) return undefined;
  const { step, checkpoint } = (error as Error & { progress?: { step?: number; checkpoint?: string } }).progress ?? {};
  if (checkpoint) return `interrupted at step ${step}; checkpoint saved in ${checkpoint}. Continue with --resume.`;
  return `interrupted: ${error.message}`;
}
