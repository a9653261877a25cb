// Who is listening to a queue: event subscribers, and callers waiting for one job to finish.
// A queue owns one of these and tells it each event and each finished record.

import type { JobEvent, JobRecord, JobStatus } from './jobs.ts';

export const FINISHED_STATUSES: readonly JobStatus[] = ['completed', 'failed', 'cancelled'];

export function isFinished(record: JobRecord): boolean {
  return FINISHED_STATUSES.includes(record.status);
}

export class JobWatchers {
  private readonly listeners = new Set<(event: JobEvent) => void>();
  private readonly waiters = new Map<string, Set<(record: JobRecord) => void>>();

  /** Whether any event subscriber is listening. */
  get listening(): boolean {
    return this.listeners.size > 0;
  }

  subscribe(listener: (event: JobEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: JobEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A broken listener (a closed connection) must not stop the queue.
      }
    }
  }

  /** Resolves with the record once `finished` is called for its id; rejects when `signal` aborts. */
  waitFor(id: string, signal?: AbortSignal): Promise<JobRecord> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const set = this.waiters.get(id) ?? new Set();
      const done = (record: JobRecord) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(record);
      };
      const onAbort = () => {
        set.delete(done);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      set.add(done);
      this.waiters.set(id, set);
    });
  }

  /** Emits the record's final event and resolves everyone waiting for it. */
  finished(record: JobRecord): void {
    if (record.status === 'completed') this.emit({ type: 'completed', id: record.id, images: record.images, artifacts: record.artifacts });
    else if (record.status === 'cancelled') this.emit({ type: 'cancelled', id: record.id });
    else this.emit({ type: 'failed', id: record.id, error: record.error ?? 'failed' });
    const set = this.waiters.get(record.id);
    this.waiters.delete(record.id);
    for (const resolve of set ?? []) resolve(structuredClone(record));
  }
}
