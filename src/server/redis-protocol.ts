// What `nuri serve --redis` and `nuri worker` exchange through Redis, besides BullMQ's own keys:
// the job data, the progress a worker reports, the return value naming the result blobs, and the
// side keys (inputs, results, cancel requests, who watches). Bytes travel as Redis strings, never through a
// shared disk, so workers may run on other machines.

import { Redis } from 'ioredis';
import type { JobPhase, JobType, RunnerProgress } from './jobs.ts';

/** The BullMQ queue both sides open. */
export const QUEUE_NAME = 'nuri-jobs';
/** BullMQ's key prefix unless the caller picks another (tests, several deployments on one Redis). */
export const DEFAULT_PREFIX = 'nuri';

/** The failure reason of a job its runner stopped because the server asked it to. */
export const CANCELLED_REASON = 'cancelled on request';

/** How long result blobs and cancel marks outlive a job if the server never collects them. */
export const SIDE_KEY_TTL_SECONDS = 7 * 24 * 3600;

/**
 * BullMQ's lock: a worker silent for this long (killed, or its event loop blocked) loses its job,
 * which another worker then retries once. Longer than any synchronous stretch of a job.
 */
export const DEFAULT_LOCK_DURATION_MS = 30_000;

/** How many times a job whose worker died is given to another worker before it is failed. */
export const MAX_STALLED_RETRIES = 1;

/**
 * The watcher count outlives its last renewal by this: a server renews it every third of it while
 * it has event streams open, so the count of a server that died without closing them lapses.
 */
export const WATCHERS_TTL_MS = 6_000;
/** How stale a worker's idea of "someone watches" may be (it reads Redis at most this often). */
export const WATCH_POLL_MS = 500;

export interface RedisJobData {
  type: JobType;
  params: Record<string, unknown>;
  /** Names of the inputs stored in the job's inputs hash (upload and result names the params hold). */
  inputs: string[];
}

/** A RunnerProgress as it travels in BullMQ's job progress: the preview PNG base64-encoded. */
export interface RedisProgress {
  step: number;
  total: number;
  phase: JobPhase;
  loss?: number;
  preview?: string;
}

export interface RedisJobReturn {
  /** The id of the worker that ran the job (also put in the record's info). */
  worker: string;
  images: { key: string; parameters: string }[];
  artifacts: { path: string; key: string }[];
  info: Record<string, unknown>;
}

export interface RedisKeys {
  /** Hash: input name → bytes, written at submit, read by the worker. */
  inputs(jobId: string): string;
  /** String: one result blob of one attempt. */
  result(jobId: string, attempt: string, index: number): string;
  /** Marks a job whose cancel was asked for; a worker that picks it up later stops at once. */
  cancel(jobId: string): string;
  /** Pub/sub channel carrying the ids of jobs to cancel to every worker. */
  cancelChannel: string;
  /** Integer: the event streams open on all servers (expires unless renewed); workers build step previews only while it is above 0. */
  watchers: string;
  /** Set once a client asked for a running job's preview (A1111's /progress): that job's previews are built from then on. */
  previewAsked(jobId: string): string;
}

export function redisKeys(prefix = DEFAULT_PREFIX): RedisKeys {
  const base = `${prefix}:${QUEUE_NAME}:nuri`;
  return {
    inputs: (jobId) => `${base}:inputs:${jobId}`,
    result: (jobId, attempt, index) => `${base}:result:${jobId}:${attempt}:${index}`,
    cancel: (jobId) => `${base}:cancel:${jobId}`,
    cancelChannel: `${base}:cancel`,
    watchers: `${base}:watchers`,
    previewAsked: (jobId) => `${base}:preview-asked:${jobId}`,
  };
}

export function encodeProgress(p: RunnerProgress): RedisProgress {
  const encoded: RedisProgress = { step: p.step, total: p.total, phase: p.phase };
  if (p.loss !== undefined) encoded.loss = p.loss;
  if (p.preview) encoded.preview = p.preview.toString('base64');
  return encoded;
}

/** BullMQ progress is any JSON; accept only the shape a worker writes. */
export function decodeProgress(data: unknown): RedisProgress | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const p = data as Partial<RedisProgress>;
  if (typeof p.step !== 'number' || typeof p.total !== 'number' || typeof p.phase !== 'string') return undefined;
  return p as RedisProgress;
}

/** Fails fast, naming the URL, where BullMQ would retry an unreachable Redis forever in silence. */
export async function checkRedisReachable(url: string): Promise<void> {
  if (!/^rediss?:\/\/[^/]/.test(url)) throw new Error(`--redis ${JSON.stringify(url)}: expected a URL like redis://host:6379`);
  const probe = new Redis(url, { lazyConnect: true, connectTimeout: 5000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  let lastError: Error | undefined;
  probe.on('error', (error: Error) => (lastError = error));
  try {
    await probe.connect();
    await probe.ping();
  } catch (error) {
    throw new Error(`cannot reach Redis at ${url}: ${(lastError ?? (error as Error)).message}`);
  } finally {
    probe.disconnect();
  }
}
