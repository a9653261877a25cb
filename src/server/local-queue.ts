// The in-process JobQueue, the default: jobs run one at a time in this process, in order, with
// at most `queueSize` waiting. Every state change is made synchronously (no await between the
// check and the change), so a cancel can only ever touch the job it names: a queued job leaves
// the line at once, a running one has its own AbortController aborted and ends `cancelled` when
// its runner stops between two steps.

import { type JobEvent, type JobQueue, type JobRecord, type JobRunner, type JobStatus, type JobType, QueueFullError } from './jobs.ts';
import { ProgressTracker } from './job-progress.ts';
import { JobWatchers, isFinished } from './job-watchers.ts';
import { type JobStore, newJobRecord } from './store.ts';

export interface LocalQueueOptions {
  store: JobStore;
  runner: JobRunner;
  /** Where training jobs' files go (the --models folder). */
  modelsDir: string;
  /** Jobs that may wait (the running one not counted). */
  queueSize?: number;
}

export const DEFAULT_QUEUE_SIZE = 32;

interface Running {
  record: JobRecord;
  controller: AbortController;
  tracker: ProgressTracker;
  done: Promise<void>;
  /** A client asked for this job's preview (A1111's progress polling): keep making them. */
  previewAsked?: boolean;
}

export class LocalQueue implements JobQueue {
  readonly queueSize: number;
  private readonly waiting: JobRecord[] = [];
  private running: Running | undefined;
  private readonly watchers = new JobWatchers();
  /** Records out of the line and not yet saved in their final state (a cancelled queued job). */
  private readonly finishing = new Map<string, JobRecord>();
  private closed = false;
  private readonly saving = new Map<string, Promise<void>>();
  /** Seconds the finished jobs took, for Retry-After (a running mean). */
  private meanJobSeconds = 5;

  private constructor(private readonly o: LocalQueueOptions) {
    this.queueSize = o.queueSize ?? DEFAULT_QUEUE_SIZE;
    if (!Number.isInteger(this.queueSize) || this.queueSize < 1) throw new Error(`--queue-size must be a positive integer, got ${o.queueSize}`);
  }

  /** Opens the queue on a store: jobs interrupted by a restart are failed, queued ones queued again. */
  static async open(options: LocalQueueOptions): Promise<LocalQueue> {
    const queue = new LocalQueue(options);
    queue.waiting.push(...(await options.store.recover()));
    queue.next();
    return queue;
  }

  async submit(type: JobType, params: Record<string, unknown>): Promise<JobRecord> {
    if (this.closed) throw new Error('the server is shutting down');
    if (this.waiting.length >= this.queueSize) throw new QueueFullError(this.queueSize, Math.max(1, Math.ceil(this.meanJobSeconds)));
    const record = newJobRecord(type, params);
    this.waiting.push(record);
    const saved = this.persist(record);
    this.watchers.emit({ type: 'queued', id: record.id, position: this.waiting.length });
    try {
      await saved;
    } catch (error) {
      // Not saved, so not accepted: the client gets the error and no id, and the job must not run.
      const at = this.waiting.indexOf(record);
      if (at >= 0) this.waiting.splice(at, 1);
      throw error;
    }
    this.next();
    return structuredClone(record);
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const live = this.live(id);
    return live ? structuredClone(live) : this.o.store.load(id);
  }

  async list(page: { offset: number; limit: number }): Promise<{ jobs: JobRecord[]; total: number }> {
    // The disk holds the last saved state; a live job's progress lives here. A job that ends while
    // the disk is read may have been read before its final save: read it again.
    const liveBefore = new Set([...this.waiting, ...this.finishing.values(), ...(this.running ? [this.running.record] : [])].map((r) => r.id));
    const { jobs, total } = await this.o.store.list(page);
    const current = async (j: JobRecord): Promise<JobRecord> => {
      const live = this.live(j.id);
      if (live) return structuredClone(live);
      return liveBefore.has(j.id) ? ((await this.o.store.load(j.id)) ?? j) : j;
    };
    return { jobs: await Promise.all(jobs.map(current)), total };
  }

  async cancel(id: string): Promise<JobRecord | undefined> {
    const index = this.waiting.findIndex((r) => r.id === id);
    if (index >= 0) {
      const [record] = this.waiting.splice(index, 1);
      await this.finish(record, 'cancelled', null);
      this.emitPositions();
      return structuredClone(record);
    }
    if (this.running?.record.id === id) {
      this.running.controller.abort();
      return structuredClone(this.running.record);
    }
    return this.o.store.load(id);
  }

  async wait(id: string, signal?: AbortSignal): Promise<JobRecord> {
    // A live record's status is final before its waiters are told, so this check and the
    // registration cannot miss the end.
    const live = this.live(id);
    if (live) return isFinished(live) ? structuredClone(live) : this.watchers.waitFor(id, signal);
    const record = await this.o.store.load(id);
    if (!record) throw new Error(`no job ${id}`);
    return isFinished(record) ? record : this.watchers.waitFor(id, signal);
  }

  subscribe(listener: (event: JobEvent) => void): () => void {
    return this.watchers.subscribe(listener);
  }

  preview(id: string): Buffer | undefined {
    if (this.running?.record.id !== id) return undefined;
    this.running.previewAsked = true;
    return this.running.tracker.latestPreview;
  }

  async pending(): Promise<number> {
    return this.waiting.length;
  }

  /** Stops taking jobs and cancels the running one; queued jobs stay on disk for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    const running = this.running;
    running?.controller.abort();
    await running?.done;
  }

  private live(id: string): JobRecord | undefined {
    if (this.running?.record.id === id) return this.running.record;
    return this.waiting.find((r) => r.id === id) ?? this.finishing.get(id);
  }

  private next(): void {
    if (this.running || this.closed) return;
    const record = this.waiting.shift();
    if (!record) return;
    const controller = new AbortController();
    const tracker = new ProgressTracker(record.id);
    const running: Running = { record, controller, tracker, done: Promise.resolve() };
    this.running = running;
    running.done = this.run(running).finally(() => {
      this.running = undefined;
      this.next();
    });
    this.emitPositions();
  }

  private async run(running: Running): Promise<void> {
    const { record, controller, tracker } = running;
    const started = performance.now();
    record.status = 'running';
    record.startedAt = new Date().toISOString();
    record.progress = { step: 0, total: 0, phase: 'loading' };
    await this.persist(record).catch(() => {});
    this.watchers.emit({ type: 'started', id: record.id });
    try {
      const result = await this.o.runner(
        { id: record.id, type: record.type, params: record.params },
        {
          signal: controller.signal,
          progress: (p) => {
            if (controller.signal.aborted) return;
            const events = tracker.report(p);
            record.progress = { ...tracker.latest };
            for (const event of events) this.watchers.emit(event);
          },
          readInput: (name) => this.o.store.readInput(name),
          wantsPreview: () => this.watchers.listening || running.previewAsked === true,
        },
      );
      if (controller.signal.aborted) return await this.finish(record, 'cancelled', null);
      record.progress = { ...record.progress, phase: 'saving' };
      this.watchers.emit({ type: 'progress', id: record.id, step: record.progress.step, total: record.progress.total, phase: 'saving', etaSeconds: null });
      const files = await this.o.store.writeResult(record.id, result, this.o.modelsDir);
      Object.assign(record, files, { info: result.info });
      await this.finish(record, 'completed', null);
    } catch (error) {
      if (controller.signal.aborted) await this.finish(record, 'cancelled', null);
      else await this.finish(record, 'failed', (error as Error).message ?? String(error));
    } finally {
      const seconds = (performance.now() - started) / 1000;
      this.meanJobSeconds = 0.8 * this.meanJobSeconds + 0.2 * seconds;
    }
  }

  private async finish(record: JobRecord, status: JobStatus, error: string | null): Promise<void> {
    this.finishing.set(record.id, record);
    record.status = status;
    record.error = error;
    record.finishedAt = new Date().toISOString();
    await this.persist(record).catch((e: Error) => {
      record.status = 'failed';
      record.error = `the job finished but its record could not be saved: ${e.message}`;
    });
    this.watchers.finished(record);
    this.finishing.delete(record.id);
  }

  /** Saves a snapshot of the record; saves of one job land in the order they were made. */
  private persist(record: JobRecord): Promise<void> {
    const snapshot = structuredClone(record);
    const saved = (this.saving.get(record.id) ?? Promise.resolve()).catch(() => {}).then(() => this.o.store.save(snapshot));
    this.saving.set(record.id, saved);
    const forget = () => {
      if (this.saving.get(record.id) === saved) this.saving.delete(record.id);
    };
    saved.then(forget, forget);
    return saved;
  }

  private emitPositions(): void {
    this.waiting.forEach((r, i) => this.watchers.emit({ type: 'queued', id: r.id, position: i + 1 }));
  }
}
