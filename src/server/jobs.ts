// The contract between the HTTP layers (native /api/v1, AUTOMATIC1111's /sdapi/v1), the queues
// (in-process, or BullMQ on Redis) and the code that runs a job. Routes talk to a JobQueue only;
// a queue hands each job to a JobRunner (in this process, or in a `nuri worker` elsewhere) and
// keeps the record, the result files and the events.

export const JOB_TYPES = ['generate', 'edit', 'attention', 'train'] as const;
export type JobType = (typeof JOB_TYPES)[number];

/** What newJobId (store.ts) makes: its creation time in base 36, a sequence number, a random tail. */
export const JOB_ID = /^job-[0-9a-z]{12}-[0-9a-f]{6}$/;

export const JOB_STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** What the job is doing now: loading a model, inverting a photo, sampling, training. */
export type JobPhase = 'loading' | 'inverting' | 'sampling' | 'training' | 'saving';

export interface JobRecord {
  id: string;
  type: JobType;
  /** The validated parameters, as the schema of `type` normalised them (defaults filled in). */
  params: Record<string, unknown>;
  status: JobStatus;
  progress: { step: number; total: number; phase?: JobPhase };
  /** File names of the result PNGs, served at /api/v1/images/:name. */
  images: string[];
  /** Names of what a training job added under the models folder (e.g. "loras/my-cat.safetensors"). */
  artifacts: string[];
  /** Job-kind specifics: seeds, A1111 infotexts, per-token heat-map image names, notes on ignored fields. */
  info: Record<string, unknown>;
  error: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export type JobEvent =
  | { type: 'queued'; id: string; position: number }
  | { type: 'started'; id: string }
  | { type: 'progress'; id: string; step: number; total: number; phase: JobPhase; etaSeconds: number | null; loss?: number }
  /** The cheap latent→RGB preview of the current step, as a data: URL (PNG or JPEG). */
  | { type: 'preview'; id: string; step: number; image: string }
  | { type: 'completed'; id: string; images: string[]; artifacts: string[] }
  | { type: 'failed'; id: string; error: string }
  | { type: 'cancelled'; id: string };

/** Thrown by `submit` when the queue holds its maximum; the HTTP layer answers 429 with Retry-After. */
export class QueueFullError extends Error {
  constructor(
    readonly limit: number,
    readonly retryAfterSeconds: number,
  ) {
    super(`the queue is full (${limit} jobs waiting); try again in ${retryAfterSeconds} s`);
  }
}

export interface JobQueue {
  /** Enqueues validated params; throws QueueFullError when full. */
  submit(type: JobType, params: Record<string, unknown>): Promise<JobRecord>;
  get(id: string): Promise<JobRecord | undefined>;
  /** History, newest first. */
  list(page: { offset: number; limit: number }): Promise<{ jobs: JobRecord[]; total: number }>;
  /**
   * A queued job is cancelled at once; a running one is aborted between two UNet steps (or
   * training steps) and reaches `cancelled` when its runner stops. Never touches another job.
   * Returns the record as it now stands, undefined for an unknown id.
   */
  cancel(id: string): Promise<JobRecord | undefined>;
  /** Resolves with the record once the job is completed, failed or cancelled. */
  wait(id: string, signal?: AbortSignal): Promise<JobRecord>;
  /** Every job's events, in order per job; returns the unsubscribe function. */
  subscribe(listener: (event: JobEvent) => void): () => void;
  /** The newest preview of a running job (PNG bytes), for A1111's progress `current_image`. */
  preview(id: string): Buffer | undefined;
  /** Jobs waiting, not counting the running ones. */
  pending(): Promise<number>;
  /** Names of the worker processes connected now, for a queue whose jobs run elsewhere (Redis). */
  workers?(): Promise<string[]>;
  close(): Promise<void>;
}

/** What a runner reports while it works; the queue turns it into JobEvents and record updates. */
export interface RunnerProgress {
  step: number;
  total: number;
  phase: JobPhase;
  timestep?: number;
  loss?: number;
  /** The step's preview, encoded (PNG), when the runner made one. */
  preview?: Buffer;
}

export interface RunnerContext {
  signal: AbortSignal;
  progress(p: RunnerProgress): void;
  /**
   * Whether anyone would see a step preview now (an event stream is open, or a client asked for
   * this job's preview); absent means always. A runner builds no preview when it is false.
   */
  wantsPreview?(): boolean;
  /**
   * The bytes of an input the params name: an uploaded file ("upload-….png") or an earlier
   * result image. Workers on other machines get these through the queue, not the disk.
   */
  readInput(name: string): Promise<Buffer>;
}

export interface JobResult {
  /** Encoded PNGs with A1111's `parameters` text chunk already in them. */
  images: { png: Buffer; parameters: string }[];
  /** Files a training job made, to be written under the models folder by the queue's owner. */
  artifacts: { path: string; data: Buffer }[];
  info: Record<string, unknown>;
}

/** Runs one job to its end; rejects with an AbortError when `ctx.signal` aborts. */
export type JobRunner = (job: { id: string; type: JobType; params: Record<string, unknown> }, ctx: RunnerContext) => Promise<JobResult>;
