// The page's only way to the server: the native API under /api/v1 (jobs, events, images, uploads,
// models). Errors keep the field the server names, so the page can show them beside that field.

import type { JobEvent, JobPhase, JobStatus, JobType } from '../server/jobs.ts';

export type { JobEvent, JobPhase, JobStatus, JobType };

const BASE = '/api/v1';

/** A job as GET /api/v1/jobs/:id shows it: image URLs instead of file names. */
export interface Job {
  id: string;
  type: JobType;
  status: JobStatus;
  progress: { step: number; total: number; phase?: JobPhase };
  /** URLs under /api/v1/images/. */
  images: string[];
  artifacts?: string[];
  error: string | null;
  info: Record<string, unknown>;
  params: Record<string, unknown>;
  createdAt?: string;
}

export const FINISHED: readonly JobStatus[] = ['completed', 'failed', 'cancelled'];

export interface ModelEntry {
  name: string;
  /** The model's own image size (square), when the server knows it. */
  defaultSize?: number;
  /** What a job that names no steps or guidance gets on it (its sampler's, or its folder's nuri.json). */
  defaultSteps?: number;
  defaultGuidance?: number;
  /** Its edits carry re-weights into the words after them unless a job says otherwise (its nuri.json). */
  reweightCarry?: boolean;
}

export interface Catalogue {
  models: ModelEntry[];
  loras: string[];
  /** Textual Inversion embeddings: the file's name, and the word a prompt uses for it. */
  embeddings: { name: string; token?: string }[];
  /** ControlNets of the models folder's controlnet/. */
  controlnets: string[];
  /** VAEs of the models folder's vae/. */
  vaes: string[];
}

/**
 * A refused request; `field` is the parameter the server blamed (e.g. "width"), if any, and `path`
 * where inside it ("controlnet.1.start" for params.controlnet.1.start).
 */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly field?: string,
    readonly path?: string,
  ) {
    super(message);
  }
}

async function request<T>(path: string, init?: RequestInit): Promise<T> {
  let response: Response;
  try {
    response = await fetch(BASE + path, init);
  } catch {
    throw new ApiError('the server cannot be reached', 0);
  }
  const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  if (!response.ok) {
    const message = typeof body.error === 'string' ? body.error : typeof body.message === 'string' ? body.message : `HTTP ${response.status}`;
    // The field is shown by where the message goes: "params.width: over the limit" → "over the limit".
    const path = fieldPath(body.field);
    throw new ApiError(message.replace(/^params\.[\w.]+:\s*/, ''), response.status, path?.split('.').find((p) => !/^\d+$/.test(p)), path);
  }
  return body as T;
}

/** "params.controlnet.0.model" or ["params", "controlnet", 0, "model"] → "controlnet.0.model" (its field: "controlnet"). */
function fieldPath(field: unknown): string | undefined {
  const path = Array.isArray(field) ? field.map(String) : typeof field === 'string' ? field.split('.') : [];
  const inside = path[0] === 'params' ? path.slice(1) : path;
  return inside.length > 0 ? inside.join('.') : undefined;
}

/** Trades the server's API token for its session cookie (sent with every later request, images and events too). */
export async function signIn(token: string): Promise<void> {
  await request('/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
}

export function submitJob(type: JobType, params: Record<string, unknown>): Promise<{ id: string }> {
  return request('/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type, params }) });
}

export function getJob(id: string): Promise<Job> {
  return request(`/jobs/${encodeURIComponent(id)}`);
}

export function cancelJob(id: string): Promise<Job> {
  return request(`/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
}

export function listJobs(offset = 0, limit = 24): Promise<{ jobs: Job[]; total: number }> {
  return request(`/jobs?offset=${offset}&limit=${limit}`);
}

/** Stores a file on the server; the name it returns goes into params (initImage, image, images). */
export async function uploadFile(file: Blob, filename = 'upload.png'): Promise<string> {
  const form = new FormData();
  form.append('file', file, filename);
  const { name } = await request<{ name: string }>('/uploads', { method: 'POST', body: form });
  return name;
}

export async function getCatalogue(): Promise<Catalogue> {
  const raw = await request<Record<string, unknown[]>>('/models');
  const names = (list: unknown[] = []) => list.map((e) => (typeof e === 'string' ? e : String((e as { name: unknown }).name)));
  const models = (raw.models ?? []).map((e): ModelEntry => {
    if (typeof e === 'string') return { name: e };
    const m = e as { name: string; defaultSize?: number; width?: number; size?: number; defaultSteps?: number | null; defaultGuidance?: number | null; reweightCarry?: boolean };
    return { name: m.name, defaultSize: m.defaultSize ?? m.width ?? m.size, defaultSteps: m.defaultSteps ?? undefined, defaultGuidance: m.defaultGuidance ?? undefined, reweightCarry: m.reweightCarry };
  });
  const embeddings = (raw.embeddings ?? []).map((e) => (typeof e === 'string' ? { name: e } : { name: String((e as { name: unknown }).name), token: (e as { token?: string }).token ?? undefined }));
  return { models, loras: names(raw.loras), embeddings, controlnets: names(raw.controlnets), vaes: names(raw.vaes) };
}

/** Where the server serves a result image or an upload by the name a job's params give it. */
export function imageUrl(name: string): string {
  return `/api/v1/images/${encodeURIComponent(name)}`;
}

/** The name an image URL serves (what params take to reuse a result as an input). */
export function imageName(url: string): string {
  return decodeURIComponent(url.slice(url.lastIndexOf('/') + 1));
}

export interface JobWatch {
  onEvent(event: JobEvent): void;
  /** The record once the job is finished (completed, failed or cancelled). */
  onFinished(job: Job): void;
}

/**
 * Follows one job through the event stream until it finishes. The record is fetched once the
 * stream is open, so a job that finished before the page listened is still reported.
 */
export function watchJob(id: string, watch: JobWatch): () => void {
  const source = new EventSource(`${BASE}/events?job=${encodeURIComponent(id)}`);
  let done = false;
  const finish = async () => {
    if (done) return;
    done = true;
    source.close();
    watch.onFinished(await getJob(id));
  };
  const handle = (message: MessageEvent<string>) => {
    let event: JobEvent;
    try {
      event = JSON.parse(message.data) as JobEvent;
    } catch {
      return;
    }
    if (event.id !== id || done) return;
    watch.onEvent(event);
    if (event.type === 'completed' || event.type === 'failed' || event.type === 'cancelled') void finish();
  };
  source.onmessage = handle;
  for (const type of ['queued', 'started', 'progress', 'preview', 'completed', 'failed', 'cancelled']) source.addEventListener(type, handle as EventListener);
  source.onopen = async () => {
    const job = await getJob(id).catch(() => undefined);
    if (job && FINISHED.includes(job.status)) void finish();
  };
  return () => {
    done = true;
    source.close();
  };
}
