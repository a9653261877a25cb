// A1111 has one global "state" (the job being made, its step, interrupted or not) that
// GET /progress reports and POST /interrupt acts on. Nuri runs a queue, so the state here is that of
// the A1111 requests in flight: the one whose job is running, else the oldest one waiting.

import type { JobQueue, JobRecord } from '../jobs.ts';
import { isFinished } from '../job-watchers.ts';


/** One txt2img/img2img call: its queue jobs, one per n_iter batch. */
export class A1111Request {
  readonly jobIds: string[] = [];
  readonly startedAt = Date.now();
  interrupted = false;

  constructor(readonly kind: 'txt2img' | 'img2img') {}
}

export interface ProgressAnswer {
  progress: number;
  eta_relative: number;
  state: Record<string, unknown>;
  current_image: string | null;
  textinfo: string | null;
}

export class A1111Activity {
  private readonly requests = new Set<A1111Request>();
  /** Stays set after an interrupt until the next request starts, as A1111's state does. */
  private lastInterrupted = false;

  constructor(private readonly queue: JobQueue) {}

  begin(kind: 'txt2img' | 'img2img'): A1111Request {
    const request = new A1111Request(kind);
    this.requests.add(request);
    this.lastInterrupted = false;
    return request;
  }

  end(request: A1111Request): void {
    this.requests.delete(request);
  }

  private async records(request: A1111Request): Promise<JobRecord[]> {
    const records = await Promise.all(request.jobIds.map((id) => this.queue.get(id)));
    return records.filter((r): r is JobRecord => r !== undefined);
  }

  /** The request to report: the one with a running job, else the oldest. */
  private async current(): Promise<{ request: A1111Request; records: JobRecord[] } | undefined> {
    let oldest: { request: A1111Request; records: JobRecord[] } | undefined;
    for (const request of this.requests) {
      const records = await this.records(request);
      if (records.some((r) => r.status === 'running')) return { request, records };
      oldest ??= { request, records };
    }
    return oldest;
  }

  async progress(skipCurrentImage: boolean): Promise<ProgressAnswer> {
    const current = await this.current();
    if (!current) return { progress: 0, eta_relative: 0, state: this.state(0, 0, 0, 0, this.lastInterrupted), current_image: null, textinfo: null };
    const { request, records } = current;
    const jobCount = Math.max(1, request.jobIds.length);
    const done = records.filter(isFinished).length;
    const running = records.find((r) => r.status === 'running');
    const step = running?.progress.step ?? 0;
    const total = running?.progress.total ?? 0;
    // A1111's formula: a little above 0 from the start, each finished batch worth 1/job_count.
    let progress = 0.01 + done / jobCount + (total > 0 ? step / total / jobCount : 0);
    progress = Math.min(progress, 1);
    const elapsed = (Date.now() - request.startedAt) / 1000;
    const image = running && !skipCurrentImage ? this.queue.preview(running.id) : undefined;
    const phase = running?.progress.phase;
    return {
      progress,
      eta_relative: Math.max(0, elapsed / progress - elapsed),
      state: this.state(jobCount, done, step, total, request.interrupted, request.kind, request.startedAt),
      current_image: image ? image.toString('base64') : null,
      textinfo: running ? `${phase ?? 'sampling'} ${step}/${total}` : `waiting in the queue (${jobCount} job${jobCount > 1 ? 's' : ''})`,
    };
  }

  private state(jobCount: number, jobNo: number, step: number, steps: number, interrupted: boolean, job = '', started?: number) {
    return {
      skipped: false,
      interrupted,
      stopping_generation: false,
      job,
      job_count: jobCount,
      job_timestamp: started ? jobTimestamp(new Date(started)) : '0',
      job_no: jobNo,
      sampling_step: step,
      sampling_steps: steps,
    };
  }

  /**
   * POST /interrupt: stops the A1111 requests that have begun running (all their remaining
   * batches, as A1111 stops the rest of n_iter); requests still waiting are left alone.
   */
  async interrupt(): Promise<void> {
    for (const request of this.requests) {
      const records = await this.records(request);
      if (!records.some((r) => r.status !== 'queued')) continue;
      request.interrupted = true;
      this.lastInterrupted = true;
      for (const record of records) if (!isFinished(record)) await this.queue.cancel(record.id);
    }
  }

  /** POST /skip: ends the running batch only; later batches of the request still run. */
  async skip(): Promise<void> {
    for (const request of this.requests) {
      for (const record of await this.records(request)) if (record.status === 'running') await this.queue.cancel(record.id);
    }
  }
}

/** A1111's job_timestamp: local time as YYYYMMDDHHMMSS. */
export function jobTimestamp(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`;
}
