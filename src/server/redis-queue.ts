// The server side of the Redis queue (`nuri serve --redis URL`): a JobQueue whose jobs run in
// `nuri worker` processes anywhere that reaches the same Redis, through BullMQ. The job history
// stays where the in-process queue keeps it, in the server's store under --outputs (one JSON file
// per job): the server owns its history and its images, Redis holds only what is in flight and
// may be flushed or run without persistence. Inputs go to the workers and results come back as
// Redis strings; the server writes the result files atomically with the store's own code.
// BullMQ's QueueEvents stream brings each job's start, progress (with the preview), completion
// and failure back, in order.

import { Job, Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { ProgressTracker } from './job-progress.ts';
import { JobWatchers, isFinished } from './job-watchers.ts';
import { DEFAULT_QUEUE_SIZE } from './local-queue.ts';
import { type JobEvent, type JobQueue, type JobRecord, type JobResult, type JobStatus, type JobType, QueueFullError } from './jobs.ts';
import {
  CANCELLED_REASON,
  DEFAULT_PREFIX,
  QUEUE_NAME,
  SIDE_KEY_TTL_SECONDS,
  WATCHERS_TTL_MS,
  checkRedisReachable,
  decodeProgress,
  redisKeys,
  type RedisJobData,
  type RedisJobReturn,
  type RedisKeys,
} from './redis-protocol.ts';
import { type JobStore, newJobRecord } from './store.ts';

export interface RedisQueueOptions {
  /** redis://host:port[/db] */
  url: string;
  store: JobStore;
  /** Where training jobs' files go (the --models folder). */
  modelsDir: string;
  /** Jobs that may wait in Redis (the running ones not counted). */
  queueSize?: number;
  prefix?: string;
  /** Where connection trouble is told (BullMQ and ioredis reconnect by themselves). Default: stderr. */
  log?: (line: string) => void;
}

const WAITING_STATES = ['waiting', 'prioritized', 'delayed'] as const;

interface Live {
  record: JobRecord;
  tracker: ProgressTracker;
}

export class RedisQueue implements JobQueue {
  readonly queueSize: number;
  private readonly queue: Queue<RedisJobData, RedisJobReturn>;
  private readonly events: QueueEvents;
  private readonly redis: Redis;
  private readonly keys: RedisKeys;
  private readonly watchers = new JobWatchers();
  /** Jobs not yet finished that this server has seen, with their progress. */
  private readonly live = new Map<string, Live>();
  /** Per job, the handling of its events in arrival order (each step may touch the disk). */
  private readonly chains = new Map<string, Promise<void>>();
  private submitting: Promise<unknown> = Promise.resolve();
  private meanJobSeconds = 5;
  private closed = false;
  /** Event streams open on this server: its part of the watcher count in Redis. */
  private watching = 0;
  private renewWatchers?: NodeJS.Timeout;
  /** Running jobs whose preview a client asked for (told to the workers once each). */
  private readonly previewAsked = new Set<string>();

  private constructor(private readonly o: RedisQueueOptions) {
    this.queueSize = o.queueSize ?? DEFAULT_QUEUE_SIZE;
    if (!Number.isInteger(this.queueSize) || this.queueSize < 1) throw new Error(`--queue-size must be a positive integer, got ${o.queueSize}`);
    const prefix = o.prefix ?? DEFAULT_PREFIX;
    this.keys = redisKeys(prefix);
    this.queue = new Queue(QUEUE_NAME, { connection: { url: o.url }, prefix });
    this.events = new QueueEvents(QUEUE_NAME, { connection: { url: o.url }, prefix });
    this.redis = new Redis(o.url, { maxRetriesPerRequest: 3 });
    // Unheard 'error' events would end the process; a lost connection is retried instead.
    const log = o.log ?? ((line) => console.error(line));
    const onError = (error: Error) => log(`redis queue: ${error.message}`);
    this.queue.on('error', onError);
    this.events.on('error', onError);
    this.redis.on('error', onError);
  }

  /**
   * Connects, then settles the jobs the store holds as queued or running: those that finished
   * while no server listened are collected now, those still in Redis are followed again.
   */
  static async open(options: RedisQueueOptions): Promise<RedisQueue> {
    await checkRedisReachable(options.url);
    const queue = new RedisQueue(options);
    try {
      await queue.connect();
    } catch (error) {
      await queue.close();
      throw new Error(`cannot use Redis at ${options.url}: ${(error as Error).message}`);
    }
    return queue;
  }

  private async connect(): Promise<void> {
    await Promise.all([this.queue.waitUntilReady(), this.events.waitUntilReady(), this.redis.ping()]);
    this.events.on('active', ({ jobId }) => this.handle(jobId, () => this.started(jobId)));
    this.events.on('progress', ({ jobId, data }) => this.handle(jobId, () => this.progressed(jobId, data)));
    this.events.on('stalled', ({ jobId }) => this.handle(jobId, () => this.stalled(jobId)));
    this.events.on('completed', ({ jobId }) => this.handle(jobId, () => this.collect(jobId)));
    this.events.on('failed', ({ jobId, failedReason }) => this.handle(jobId, () => this.failed(jobId, failedReason)));
    const { jobs } = await this.o.store.list({ offset: 0, limit: Number.MAX_SAFE_INTEGER });
    await Promise.all(jobs.filter((r) => !isFinished(r)).map((record) => this.serial(record.id, () => this.resume(record))));
    this.renewWatchers = setInterval(() => this.renewWatcherCount(), WATCHERS_TTL_MS / 3);
    this.renewWatchers.unref();
  }

  async submit(type: JobType, params: Record<string, unknown>): Promise<JobRecord> {
    // One submit at a time, so that two cannot both pass the size check.
    const submitted = this.submitting.then(() => this.enqueue(type, params));
    this.submitting = submitted.catch(() => {});
    return submitted;
  }

  private async enqueue(type: JobType, params: Record<string, unknown>): Promise<JobRecord> {
    if (this.closed) throw new Error('the server is shutting down');
    const waiting = await this.pending();
    if (waiting >= this.queueSize) throw new QueueFullError(this.queueSize, Math.max(1, Math.ceil(this.meanJobSeconds)));
    const record = newJobRecord(type, params);
    const inputs = inputNames(params).filter((name) => this.o.store.hasInput(name));
    if (inputs.length > 0) {
      const bytes = await Promise.all(inputs.map((name) => this.o.store.readInput(name)));
      const key = this.keys.inputs(record.id);
      await this.redis
        .multi()
        .hset(key, Object.fromEntries(inputs.map((name, i) => [name, bytes[i]])))
        .expire(key, SIDE_KEY_TTL_SECONDS)
        .exec();
    }
    await this.o.store.save(record);
    this.live.set(record.id, { record, tracker: new ProgressTracker(record.id) });
    // Announced before BullMQ has it, so that no event of the job can come before this one.
    this.watchers.emit({ type: 'queued', id: record.id, position: waiting + 1 });
    try {
      await this.queue.add(type, { type, params, inputs }, { jobId: record.id, attempts: 1 });
    } catch (error) {
      await this.settle(record.id, 'failed', `could not be queued in Redis: ${(error as Error).message}`);
      throw error;
    }
    return structuredClone(record);
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const live = this.live.get(id);
    return live ? structuredClone(live.record) : this.o.store.load(id);
  }

  async list(page: { offset: number; limit: number }): Promise<{ jobs: JobRecord[]; total: number }> {
    const { jobs, total } = await this.o.store.list(page);
    // A live job's progress is here, not on disk; a job that ended while the disk was read may
    // have been read before its final save: read it again.
    const current = async (j: JobRecord): Promise<JobRecord> => {
      const live = this.live.get(j.id);
      if (live) return structuredClone(live.record);
      return isFinished(j) ? j : ((await this.o.store.load(j.id)) ?? j);
    };
    return { jobs: await Promise.all(jobs.map(current)), total };
  }

  async cancel(id: string): Promise<JobRecord | undefined> {
    const record = await this.get(id);
    if (!record || isFinished(record)) return record;
    await this.serial(id, async () => {
      const job = await this.queue.getJob(id);
      const state = job ? await job.getState() : 'unknown';
      if ((WAITING_STATES as readonly string[]).includes(state)) {
        try {
          // Atomic in BullMQ: fails when a worker has locked the job meanwhile.
          await job!.remove();
          await this.settle(id, 'cancelled', null);
          this.emitPositions();
          return;
        } catch {
          // Taken by a worker since: cancel it as a running job.
        }
      }
      // Gone from Redis (flushed, or a Redis without persistence restarted): nothing will run it.
      if (state === 'unknown') return this.settle(id, 'cancelled', null);
      if (state === 'completed' || state === 'failed') return;
      // The mark stops a worker that takes the job later (after a crash of this one); the message
      // aborts it where it runs now. Both name this job only.
      await this.redis.multi().set(this.keys.cancel(id), '1', 'EX', SIDE_KEY_TTL_SECONDS).publish(this.keys.cancelChannel, id).exec();
    });
    return this.get(id);
  }

  async wait(id: string, signal?: AbortSignal): Promise<JobRecord> {
    // Listen first, so that the job cannot finish unseen between the look-up and the wait.
    const stop = new AbortController();
    const waiting = this.watchers.waitFor(id, signal ? AbortSignal.any([signal, stop.signal]) : stop.signal);
    const record = await this.get(id);
    if (record && !isFinished(record)) return waiting;
    stop.abort();
    waiting.catch(() => {});
    if (!record) throw new Error(`no job ${id}`);
    return record;
  }

  /** An event stream: counted in Redis while open, so that the workers build step previews. */
  subscribe(listener: (event: JobEvent) => void): () => void {
    const unsubscribe = this.watchers.subscribe(listener);
    this.countWatcher(1);
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      unsubscribe();
      this.countWatcher(-1);
    };
  }

  preview(id: string): Buffer | undefined {
    const live = this.live.get(id);
    if (live?.record.status === 'running' && !this.previewAsked.has(id)) {
      // As the in-process queue does: once asked, the job's previews are built until it ends.
      this.previewAsked.add(id);
      this.redis.set(this.keys.previewAsked(id), '1', 'EX', SIDE_KEY_TTL_SECONDS).catch(() => this.previewAsked.delete(id));
    }
    return live?.tracker.latestPreview;
  }

  /**
   * The watcher count is the sum over servers; each renews its expiry while it has streams open, so
   * the part of a server that died lapses once no live server renews it. Redis trouble only costs
   * previews: the errors are logged by the connection's handler.
   */
  private countWatcher(delta: 1 | -1): void {
    this.watching += delta;
    const key = this.keys.watchers;
    if (delta > 0) {
      this.redis.multi().incr(key).pexpire(key, WATCHERS_TTL_MS).exec().catch(() => {});
      return;
    }
    this.redis
      .decr(key)
      .then((left) => (left <= 0 ? this.redis.del(key) : 0))
      .catch(() => {});
  }

  /** Renews the count's expiry, and puts this server's part back if the count lapsed (a Redis restart). */
  private renewWatcherCount(): void {
    if (this.watching <= 0) return;
    const key = this.keys.watchers;
    this.redis.multi().set(key, this.watching, 'PX', WATCHERS_TTL_MS, 'NX').pexpire(key, WATCHERS_TTL_MS).exec().catch(() => {});
  }

  async pending(): Promise<number> {
    return this.queue.getJobCountByTypes(...WAITING_STATES);
  }

  /** The names of the workers connected now (BullMQ lists them by their Redis connections). */
  async workers(): Promise<string[]> {
    const clients = await this.queue.getWorkers();
    return clients.map((c) => String(c.rawname ?? c.name).replace(/^.*:w:/, ''));
  }

  /** Stops listening; the jobs in Redis go on in the workers and are collected at the next open. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.renewWatchers);
    await this.submitting;
    await Promise.all(this.chains.values());
    await Promise.allSettled([this.events.close(), this.queue.close()]);
    this.redis.disconnect();
  }

  /** Runs `step` after the earlier steps of the same job; rejects with its error. */
  private serial(id: string, step: () => Promise<void>): Promise<void> {
    const next = (this.chains.get(id) ?? Promise.resolve()).then(step);
    const settled = next.catch(() => {});
    this.chains.set(id, settled);
    void settled.then(() => {
      if (this.chains.get(id) === settled) this.chains.delete(id);
    });
    return next;
  }

  /** Handles one BullMQ event of a job; an error there fails the job rather than going unhandled. */
  private handle(id: string, step: () => Promise<void>): void {
    this.serial(id, step).catch((error: Error) => this.settle(id, 'failed', `the server lost track of this job: ${error.message}`).catch(() => {}));
  }

  /** The live entry of a job this server (or an earlier run of it) queued; undefined for others. */
  private async follow(id: string): Promise<Live | undefined> {
    const live = this.live.get(id);
    if (live) return live;
    const record = await this.o.store.load(id);
    if (!record || isFinished(record)) return undefined;
    const entry = { record, tracker: new ProgressTracker(id) };
    this.live.set(id, entry);
    return entry;
  }

  private async resume(record: JobRecord): Promise<void> {
    const job = await this.queue.getJob(record.id);
    if (!job) return this.settle(record.id, 'failed', 'the job is no longer in Redis (was Redis restarted or flushed?); submit it again');
    const state = await job.getState();
    if (state === 'completed') return this.collect(record.id);
    if (state === 'failed') return this.failed(record.id, job.failedReason);
    const live = await this.follow(record.id);
    if (live && state === 'active' && live.record.status !== 'running') await this.started(record.id);
    if (live && state !== 'active' && live.record.status === 'running') await this.stalled(record.id);
  }

  private async started(id: string): Promise<void> {
    const live = await this.follow(id);
    if (!live) return;
    live.record.status = 'running';
    live.record.startedAt = new Date().toISOString();
    live.record.progress = { step: 0, total: 0, phase: 'loading' };
    live.tracker = new ProgressTracker(id);
    await this.o.store.save(live.record);
    this.watchers.emit({ type: 'started', id });
    this.emitPositions();
  }

  /** The line moved: each job still waiting hears its place (BullMQ takes jobs oldest first). */
  private emitPositions(): void {
    const waiting = [...this.live.values()].filter((l) => l.record.status === 'queued').sort((a, b) => a.record.id.localeCompare(b.record.id));
    waiting.forEach((l, i) => this.watchers.emit({ type: 'queued', id: l.record.id, position: i + 1 }));
  }

  private async progressed(id: string, data: unknown): Promise<void> {
    const p = decodeProgress(data);
    const live = this.live.get(id);
    if (!p || !live || live.record.status !== 'running') return;
    const events = live.tracker.report({ ...p, preview: p.preview ? Buffer.from(p.preview, 'base64') : undefined });
    live.record.progress = { ...live.tracker.latest };
    for (const event of events) this.watchers.emit(event);
  }

  /** The worker died (or went silent); BullMQ put the job back in line for another worker. */
  private async stalled(id: string): Promise<void> {
    const live = await this.follow(id);
    if (!live) return;
    live.record.status = 'queued';
    live.record.progress = { step: 0, total: 0 };
    live.record.info = { ...live.record.info, restarts: Number(live.record.info.restarts ?? 0) + 1 };
    await this.o.store.save(live.record);
    this.watchers.emit({ type: 'queued', id, position: await this.pending() });
  }

  /** Fetches a completed job's result bytes from Redis, writes them under --outputs, then forgets the job in Redis. */
  private async collect(id: string): Promise<void> {
    const live = await this.follow(id);
    if (!live) return;
    const job = await Job.fromId<RedisJobData, RedisJobReturn>(this.queue, id);
    const value = job?.returnvalue;
    if (!value) return this.settle(id, 'failed', 'the worker completed the job but its result is missing in Redis');
    const blobKeys = [...value.images.map((i) => i.key), ...value.artifacts.map((a) => a.key)];
    const blobs = blobKeys.length > 0 ? await this.redis.mgetBuffer(...blobKeys) : [];
    if (blobs.some((b) => b === null)) return this.settle(id, 'failed', 'the result files of this job expired in Redis before the server collected them');
    const result: JobResult = {
      images: value.images.map((image, i) => ({ png: blobs[i]!, parameters: image.parameters })),
      artifacts: value.artifacts.map((artifact, i) => ({ path: artifact.path, data: blobs[value.images.length + i]! })),
      info: value.info,
    };
    live.record.progress = { ...live.record.progress, phase: 'saving' };
    this.watchers.emit({ type: 'progress', id, step: live.record.progress.step, total: live.record.progress.total, phase: 'saving', etaSeconds: null });
    const files = await this.o.store.writeResult(id, result, this.o.modelsDir);
    Object.assign(live.record, files, { info: { ...live.record.info, ...value.info } });
    await this.settle(id, 'completed', null);
    await this.forget(id, blobKeys);
  }

  private async failed(id: string, reason: string): Promise<void> {
    const cancelled = reason === CANCELLED_REASON;
    await this.settle(id, cancelled ? 'cancelled' : 'failed', cancelled ? null : reason);
    await this.forget(id, []);
  }

  /** Removes what Redis still holds for a finished job; its record and files are on disk now. */
  private async forget(id: string, blobKeys: string[]): Promise<void> {
    await this.redis.del(this.keys.inputs(id), this.keys.cancel(id), this.keys.previewAsked(id), ...blobKeys);
    await (await this.queue.getJob(id))?.remove().catch(() => {});
  }

  private async settle(id: string, status: JobStatus, error: string | null): Promise<void> {
    const live = await this.follow(id);
    if (!live) return;
    // Forgotten only once saved, so that get() and list() never fall back on an older disk state.
    await this.finish(live.record, status, error);
    this.live.delete(id);
    this.previewAsked.delete(id);
  }

  private async finish(record: JobRecord, status: JobStatus, error: string | null): Promise<void> {
    record.status = status;
    record.error = error;
    record.finishedAt = new Date().toISOString();
    if (record.startedAt) {
      const seconds = (Date.parse(record.finishedAt) - Date.parse(record.startedAt)) / 1000;
      this.meanJobSeconds = 0.8 * this.meanJobSeconds + 0.2 * seconds;
    }
    await this.o.store.save(record).catch((e: Error) => {
      record.status = 'failed';
      record.error = `the job finished but its record could not be saved: ${e.message}`;
    });
    this.watchers.finished(record);
  }
}

/** The strings a job's params hold, top level or in arrays: those naming an upload or a result are its inputs. */
function inputNames(params: Record<string, unknown>): string[] {
  const names = new Set<string>();
  for (const value of Object.values(params)) {
    for (const item of Array.isArray(value) ? value : [value]) if (typeof item === 'string') names.add(item);
  }
  return [...names];
}
