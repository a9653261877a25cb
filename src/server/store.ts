// What the server keeps on disk under --outputs: one JSON file per job (jobs/), result PNGs
// (images/) and uploads (uploads/). One file per job rather than a database: nothing native to
// install, each record replaced atomically on its own, and the history readable with `cat`.
// Every file is written to a temporary name in its folder and renamed into place, so a crash
// never leaves half a record or half an image.

import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { writeFileAtomic } from '../io/atomic-write.ts';
import { JOB_ID, type JobRecord, type JobResult, type JobType } from './jobs.ts';
import { FILE_NAME } from './schemas.ts';

export type ImageType = 'png' | 'jpeg' | 'webp';

/** The image format by its first bytes (never by a name or a declared content type). */
export function sniffImage(bytes: Uint8Array): ImageType | undefined {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.byteLength, 16));
  if (b.length >= 8 && b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 12 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  return undefined;
}

/** An upload that is not an image: the client's mistake (a failing disk is the server's). */
export class NotAnImageError extends Error {
  constructor() {
    super('not a PNG, JPEG or WebP image');
  }
}

let lastId = { time: 0, seq: 0 };

/** Job ids sort by creation time (name order is history order), with a random tail. */
export function newJobId(): string {
  const now = Date.now();
  lastId = now > lastId.time ? { time: now, seq: 0 } : { time: lastId.time, seq: lastId.seq + 1 };
  const stamp = lastId.time.toString(36).padStart(9, '0') + lastId.seq.toString(36).padStart(3, '0');
  return `job-${stamp}-${randomBytes(3).toString('hex')}`;
}

/** A new job's record, queued now. */
export function newJobRecord(type: JobType, params: Record<string, unknown>): JobRecord {
  return {
    id: newJobId(),
    type,
    params,
    status: 'queued',
    progress: { step: 0, total: 0 },
    images: [],
    artifacts: [],
    info: {},
    error: null,
    createdAt: new Date().toISOString(),
    startedAt: null,
    finishedAt: null,
  };
}

export class JobStore {
  readonly jobsDir: string;
  readonly imagesDir: string;
  readonly uploadsDir: string;

  constructor(readonly outputs: string) {
    this.jobsDir = join(outputs, 'jobs');
    this.imagesDir = join(outputs, 'images');
    this.uploadsDir = join(outputs, 'uploads');
    for (const dir of [this.jobsDir, this.imagesDir, this.uploadsDir]) mkdirSync(dir, { recursive: true });
  }

  async save(record: JobRecord): Promise<void> {
    await writeFileAtomic(join(this.jobsDir, `${record.id}.json`), JSON.stringify(record, null, 1));
  }

  async load(id: string): Promise<JobRecord | undefined> {
    if (!JOB_ID.test(id)) return undefined;
    const text = await readFile(join(this.jobsDir, `${id}.json`), 'utf8').catch(() => undefined);
    return text === undefined ? undefined : (JSON.parse(text) as JobRecord);
  }

  /** Newest first. */
  async list(page: { offset: number; limit: number }): Promise<{ jobs: JobRecord[]; total: number }> {
    const ids = this.ids().reverse();
    const jobs = await Promise.all(ids.slice(page.offset, page.offset + page.limit).map((id) => this.load(id)));
    return { jobs: jobs.filter((j): j is JobRecord => j !== undefined), total: ids.length };
  }

  /**
   * After a restart: a job that was running when the server stopped is marked failed (its process
   * is gone); the queued ones are returned, oldest first, to be queued again.
   */
  async recover(): Promise<JobRecord[]> {
    const queued: JobRecord[] = [];
    for (const id of this.ids()) {
      const record = await this.load(id);
      if (record?.status === 'running') {
        await this.save({ ...record, status: 'failed', error: 'the server stopped while this job was running; submit it again', finishedAt: new Date().toISOString() });
      } else if (record?.status === 'queued') queued.push(record);
    }
    return queued;
  }

  /** Writes a job's result PNGs as JOBID-1.png, JOBID-2.png, …; returns their names. */
  async writeImages(id: string, images: JobResult['images']): Promise<string[]> {
    const names = images.map((_, i) => `${id}-${i + 1}.png`);
    await Promise.all(images.map((image, i) => writeFileAtomic(join(this.imagesDir, names[i]), image.png)));
    return names;
  }

  /**
   * Puts a finished job's files in place: its PNGs under images/, a training job's files under the
   * models folder (where the registry lists them). Returns the names for the record.
   */
  async writeResult(id: string, result: JobResult, modelsDir: string): Promise<{ images: string[]; artifacts: string[] }> {
    const images = await this.writeImages(id, result.images);
    const artifacts = await writeArtifacts(modelsDir, result.artifacts);
    return { images, artifacts };
  }

  /**
   * The path of a result image or an upload (what a job can name as its input, so a page can show
   * a job's starting picture again), or undefined for a name that is not one (no path can escape
   * the folders).
   */
  imagePath(name: string): string | undefined {
    if (!FILE_NAME.test(name) || !/\.(png|jpg|webp)$/.test(name)) return undefined;
    const path = this.inputPath(name);
    return existsSync(path) ? path : undefined;
  }

  /** Keeps an uploaded image (PNG, JPEG or WebP by its bytes); returns its name. */
  async saveUpload(bytes: Buffer): Promise<string> {
    const type = sniffImage(bytes);
    if (!type) throw new NotAnImageError();
    const name = `upload-${randomUUID()}.${type === 'jpeg' ? 'jpg' : type}`;
    await writeFileAtomic(join(this.uploadsDir, name), bytes);
    return name;
  }

  /** Whether `name` is an upload or a result image. */
  hasInput(name: string): boolean {
    return FILE_NAME.test(name) && existsSync(this.inputPath(name));
  }

  /** The bytes of an upload ("upload-…") or a result image. */
  async readInput(name: string): Promise<Buffer> {
    if (!this.hasInput(name)) throw new Error(`no upload or result image named ${JSON.stringify(name)}`);
    return readFile(this.inputPath(name));
  }

  private inputPath(name: string): string {
    return join(name.startsWith('upload-') ? this.uploadsDir : this.imagesDir, name);
  }

  private ids(): string[] {
    return readdirSync(this.jobsDir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -5))
      .filter((id) => JOB_ID.test(id))
      .sort();
  }
}

/** Writes a training job's files under the models folder; returns their paths relative to it. */
export async function writeArtifacts(modelsDir: string, artifacts: JobResult['artifacts']): Promise<string[]> {
  const written: string[] = [];
  for (const { path, data } of artifacts) {
    const relativePath = normalize(path);
    if (isAbsolute(relativePath) || relativePath.split(sep).includes('..')) throw new Error(`artifact path ${path} leaves the models folder`);
    mkdirSync(dirname(join(modelsDir, relativePath)), { recursive: true });
    await writeFileAtomic(join(modelsDir, relativePath), data);
    written.push(relativePath.split(sep).join('/'));
  }
  return written;
}
