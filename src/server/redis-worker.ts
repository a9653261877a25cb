// The worker side of the Redis queue (`nuri worker`): takes jobs from BullMQ, runs them with a
// JobRunner, reports progress (and previews, while a server says someone watches) as BullMQ job
// progress, and leaves the result bytes in Redis for the server to collect. BullMQ's lock renewal
// is the heartbeat: a worker that dies mid-job stops renewing, and the stalled-job check of
// another worker hands the job on once.

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { JobRunner, RunnerContext } from './jobs.ts';
import {
  CANCELLED_REASON,
  DEFAULT_LOCK_DURATION_MS,
  DEFAULT_PREFIX,
  MAX_STALLED_RETRIES,
  QUEUE_NAME,
  SIDE_KEY_TTL_SECONDS,
  WATCH_POLL_MS,
  checkRedisReachable,
  encodeProgress,
  redisKeys,
  type RedisJobData,
  type RedisJobReturn,
  type RedisKeys,
} from './redis-protocol.ts';

export interface RedisWorkerOptions {
  url: string;
  runner: JobRunner;
  /** Shown in each job's info as `worker`; defaults to host:pid. */
  id?: string;
  /** Jobs run at once by this process (each job's ORT sessions already use every core). */
  concurrency?: number;
  lockDurationMs?: number;
  prefix?: string;
  log?: (line: string) => void;
}

export interface RedisWorker {
  id: string;
  /** Stops taking jobs, lets the running ones finish, then disconnects. */
  close(): Promise<void>;
}

const LOST_LOCK_REASON = 'the worker lost its lock on the job (silent longer than the lock duration)';

export async function startRedisWorker(options: RedisWorkerOptions): Promise<RedisWorker> {
  const id = options.id ?? `${hostname()}:${process.pid}`;
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  const keys = redisKeys(prefix);
  const lockDuration = options.lockDurationMs ?? DEFAULT_LOCK_DURATION_MS;
  const log = options.log ?? (() => {});
  await checkRedisReachable(options.url);
  const redis = new Redis(options.url, { maxRetriesPerRequest: null });
  const subscriber = redis.duplicate();
  for (const client of [redis, subscriber]) client.on('error', (error: Error) => log(`redis: ${error.message}`));

  const processJob = async (job: Job<RedisJobData, RedisJobReturn>, _token: string | undefined, signal?: AbortSignal): Promise<RedisJobReturn> => {
    const jobId = job.id!;
    if (!signal) throw new Error('BullMQ gave the processor no abort signal');
    // A cancel asked for before this worker took the job (or before a crashed one lost it).
    if (await redis.exists(keys.cancel(jobId))) throw new UnrecoverableError(CANCELLED_REASON);
    log(`job ${jobId} (${job.data.type}) started, attempt ${job.attemptsStarted}`);

    const watch = new WatchState(redis, keys, jobId);
    await watch.refresh();
    // Progress updates are sent in order; the last is awaited before the result is returned.
    let sent: Promise<unknown> = Promise.resolve();
    const context: RunnerContext = {
      signal,
      wantsPreview: () => watch.wants(),
      progress: (p) => {
        sent = sent.then(() => job.updateProgress(encodeProgress(p) as object)).catch((error: Error) => log(`job ${jobId}: progress not sent: ${error.message}`));
      },
      readInput: async (name) => {
        const bytes = await redis.hgetBuffer(keys.inputs(jobId), name);
        if (!bytes) throw new Error(`input "${name}" was not sent with job ${jobId}`);
        return bytes;
      },
    };
    try {
      const result = await options.runner({ id: jobId, type: job.data.type, params: job.data.params }, context);
      await sent;
      // Each attempt writes its own keys, so a late write from a worker that lost the job cannot
      // overwrite what the completing attempt returns.
      const attempt = randomUUID();
      const write = redis.multi();
      const images = result.images.map((image, index) => {
        const key = keys.result(jobId, attempt, index);
        write.set(key, image.png, 'EX', SIDE_KEY_TTL_SECONDS);
        return { key, parameters: image.parameters };
      });
      const artifacts = result.artifacts.map((artifact, index) => {
        const key = keys.result(jobId, attempt, images.length + index);
        write.set(key, artifact.data, 'EX', SIDE_KEY_TTL_SECONDS);
        return { path: artifact.path, key };
      });
      await write.exec();
      log(`job ${jobId} completed`);
      return { worker: id, images, artifacts, info: { ...result.info, worker: id } };
    } catch (error) {
      await sent;
      if (signal.aborted) throw new UnrecoverableError(String(signal.reason ?? CANCELLED_REASON));
      log(`job ${jobId} failed: ${(error as Error).message}`);
      throw error;
    }
  };

  const worker = new Worker<RedisJobData, RedisJobReturn>(QUEUE_NAME, processJob, {
    connection: { url: options.url },
    prefix,
    name: id,
    concurrency: options.concurrency ?? 1,
    lockDuration,
    stalledInterval: lockDuration,
    maxStalledCount: MAX_STALLED_RETRIES,
    autorun: false,
  });
  worker.on('error', (error) => log(`worker error: ${error.message}`));
  // Never run a job twice at once: once the lock is lost another worker may take the job over.
  worker.on('lockRenewalFailed', (jobIds) => {
    for (const jobId of jobIds) worker.cancelJob(jobId, LOST_LOCK_REASON);
  });

  subscriber.on('message', (_channel: string, jobId: string) => {
    if (worker.cancelJob(jobId, CANCELLED_REASON)) log(`job ${jobId} cancel asked`);
  });
  await subscriber.subscribe(keys.cancelChannel);
  await worker.waitUntilReady();
  worker.run().catch((error: Error) => log(`worker stopped: ${error.message}`));
  log(`worker ${id} waiting for jobs (concurrency ${options.concurrency ?? 1})`);

  return {
    id,
    close: async () => {
      await worker.close();
      subscriber.disconnect();
      await redis.quit();
    },
  };
}

/**
 * Whether anyone would see a job's step previews, as the servers tell through Redis: an event
 * stream open on any server (the watcher count), or a client that asked for this job's preview.
 * Read at most every WATCH_POLL_MS; the answer in between is the last one read.
 */
class WatchState {
  private watched = false;
  private readAt = 0;
  private reading: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly jobId: string,
  ) {}

  refresh(): Promise<void> {
    this.reading ??= Promise.all([this.redis.get(this.keys.watchers), this.redis.exists(this.keys.previewAsked(this.jobId))])
      .then(
        ([count, asked]) => void (this.watched = Number(count) > 0 || asked > 0),
        // Cannot tell: build them, as a worker did before it could.
        () => void (this.watched = true),
      )
      .finally(() => {
        this.readAt = Date.now();
        this.reading = undefined;
      });
    return this.reading;
  }

  wants(): boolean {
    if (Date.now() - this.readAt >= WATCH_POLL_MS) void this.refresh();
    return this.watched;
  }
}
