// A small in-process JobQueue for the A1111 layer's tests until the server's own queue lands: one
// job at a time, the real generate pipeline on the registry's model, previews, cancellation
// between steps, PNGs with A1111 parameters kept in memory.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readImage } from '../../src/io/image.ts';
import { formatParameters } from '../../src/io/parameters.ts';
import { encodePng } from '../../src/io/png.ts';
import { generate } from '../../src/pipelines/generate.ts';
import { personalise } from '../../src/pipelines/personalise.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import type { SchedulerName } from '../../src/schedulers/index.ts';
import { SAMPLER_LABELS } from '../../src/schedulers/labels.ts';
import type { JobEvent, JobQueue, JobRecord, JobType } from '../../src/server/jobs.ts';
import type { RegistryEntry } from '../../src/server/sdapi/catalog.ts';

export interface FakeRegistry {
  models(): RegistryEntry[];
  loras(): RegistryEntry[];
  embeddings(): RegistryEntry[];
}

export class FakeQueue implements JobQueue {
  readonly records = new Map<string, JobRecord>();
  readonly images = new Map<string, Buffer>();
  readonly uploads = new Map<string, Buffer>();
  readonly submitted: Record<string, unknown>[] = [];
  private readonly previews = new Map<string, Buffer>();
  private readonly controllers = new Map<string, AbortController>();
  private readonly listeners = new Set<(e: JobEvent) => void>();
  private readonly waiters = new Map<string, ((r: JobRecord) => void)[]>();
  private readonly order: string[] = [];
  private running = false;
  private readonly uploadDir = mkdtempSync(join(tmpdir(), 'nuri-sdapi-uploads-'));

  constructor(
    private readonly registry: FakeRegistry,
    private readonly limit = 16,
  ) {}

  async submit(type: JobType, params: Record<string, unknown>): Promise<JobRecord> {
    if ((await this.pending()) >= this.limit) {
      const { QueueFullError } = await import('../../src/server/jobs.ts');
      throw new QueueFullError(this.limit, 3);
    }
    const record: JobRecord = { id: randomUUID(), type, params, status: 'queued', progress: { step: 0, total: 0 }, images: [], artifacts: [], info: {}, error: null, createdAt: new Date().toISOString(), startedAt: null, finishedAt: null };
    this.records.set(record.id, record);
    this.submitted.push(params);
    this.order.push(record.id);
    void this.pump();
    return record;
  }

  async saveUpload(bytes: Buffer): Promise<string> {
    const name = `upload-${randomUUID()}.png`;
    this.uploads.set(name, bytes);
    writeFileSync(join(this.uploadDir, name), bytes);
    return name;
  }

  async readInput(name: string): Promise<Buffer> {
    const bytes = this.images.get(name);
    if (!bytes) throw new Error(`no image ${name}`);
    return bytes;
  }

  async get(id: string) {
    return this.records.get(id);
  }

  async list(page: { offset: number; limit: number }) {
    const jobs = [...this.records.values()].reverse();
    return { jobs: jobs.slice(page.offset, page.offset + page.limit), total: jobs.length };
  }

  async cancel(id: string) {
    const record = this.records.get(id);
    if (!record) return undefined;
    if (record.status === 'queued') this.finish(record, 'cancelled');
    else if (record.status === 'running') this.controllers.get(id)?.abort();
    return record;
  }

  wait(id: string, signal?: AbortSignal): Promise<JobRecord> {
    const record = this.records.get(id);
    if (!record) return Promise.reject(new Error(`no job ${id}`));
    if (['completed', 'failed', 'cancelled'].includes(record.status)) return Promise.resolve(record);
    return new Promise((resolve, reject) => {
      this.waiters.set(id, [...(this.waiters.get(id) ?? []), resolve]);
      signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
    });
  }

  subscribe(listener: (e: JobEvent) => void) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  preview(id: string) {
    return this.previews.get(id);
  }

  async pending() {
    return [...this.records.values()].filter((r) => r.status === 'queued').length;
  }

  async close() {}

  private emit(event: JobEvent) {
    for (const listener of this.listeners) listener(event);
  }

  private finish(record: JobRecord, status: 'completed' | 'failed' | 'cancelled', error: string | null = null) {
    Object.assign(record, { status, error, finishedAt: new Date().toISOString() });
    this.previews.delete(record.id);
    for (const resolve of this.waiters.get(record.id) ?? []) resolve(record);
    this.waiters.delete(record.id);
  }

  private async pump() {
    if (this.running) return;
    this.running = true;
    try {
      for (let id = this.order.shift(); id; id = this.order.shift()) {
        const record = this.records.get(id)!;
        if (record.status !== 'queued') continue;
        const controller = new AbortController();
        this.controllers.set(id, controller);
        Object.assign(record, { status: 'running', startedAt: new Date().toISOString() });
        this.emit({ type: 'started', id });
        try {
          await this.run(record, controller.signal);
          this.finish(record, 'completed');
        } catch (error) {
          if (controller.signal.aborted) this.finish(record, 'cancelled');
          else this.finish(record, 'failed', (error as Error).message);
        }
      }
    } finally {
      this.running = false;
    }
  }

  private async run(record: JobRecord, signal: AbortSignal) {
    const p = record.params as Record<string, any>;
    const model = this.registry.models().find((m) => m.name === (p.model ?? 'default'))!;
    const sd = StableDiffusion.load(model.path);
    const loras = (p.loras ?? []).map((l: { name: string; weight: number }) => ({ path: this.registry.loras().find((r) => r.name === l.name)!.path, weight: l.weight }));
    const personal = await personalise(sd.components, { loras });
    const width = p.width ?? sd.defaultSize;
    const height = p.height ?? sd.defaultSize;
    const initImage = p.initImage ? await readImage(join(this.uploadDir, p.initImage), { width, height }) : undefined;
    const result = await generate(sd, {
      prompts: new Array(p.batch ?? 1).fill(p.prompt),
      negativePrompt: p.negativePrompt,
      steps: p.steps,
      scheduler: p.scheduler as SchedulerName,
      guidance: p.guidance,
      seed: p.seed,
      width,
      height,
      initImage,
      strength: p.strength,
      clipSkip: p.clipSkip,
      onStep: (s) => {
        if (signal.aborted) throw new Error('cancelled');
        record.progress = { step: s.step, total: s.total, phase: 'sampling' };
        void encodePng(s.preview()[0]).then((png) => record.status === 'running' && this.previews.set(record.id, png));
      },
    });
    for (const [i, image] of result.images.entries()) {
      const parameters = formatParameters({ prompt: p.prompt, negativePrompt: p.negativePrompt, steps: p.steps, sampler: SAMPLER_LABELS[p.scheduler as SchedulerName], guidance: p.guidance, seed: result.seeds[i], width, height, model: model.name, denoisingStrength: p.initImage ? p.strength : undefined, extra: personal.loraLabels.length ? { Lora: personal.loraLabels.join(', ') } : {} });
      const name = `${record.id}-${i}.png`;
      this.images.set(name, await encodePng(image, { parameters }));
      record.images.push(name);
    }
  }
}
