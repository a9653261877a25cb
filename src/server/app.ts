// The HTTP server (fastify): the native API under /api/v1, the health check, and the hooks where
// the AUTOMATIC1111 layer and the Studio page plug in. Routes talk to a JobQueue only, so the same
// app runs on the in-process queue or on Redis.

import { createReadStream } from 'node:fs';
import multipart from '@fastify/multipart';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { requireToken } from './auth.ts';
import { registerEvents } from './events.ts';
import { type JobQueue, type JobRecord, QueueFullError } from './jobs.ts';
import { type ModelRegistry, UnknownNameError } from './models.ts';
import { openApiDocument } from './openapi.ts';
import { registerSdapi } from './sdapi/index.ts';
import { registerStudio } from './studio.ts';
import { DEFAULT_LIMITS, ParamsError, type ServerLimits, jobSchemas, limitMessage, parseJobRequest } from './schemas.ts';
import { type JobStore, NotAnImageError } from './store.ts';

export interface AppOptions {
  queue: JobQueue;
  registry: ModelRegistry;
  /** Result images and uploads (on this machine, whichever queue runs the jobs). */
  store: JobStore;
  limits?: ServerLimits;
  /** With a token, every request but GET /health needs `Authorization: Bearer <token>`. */
  token?: string;
  logger?: boolean;
  version?: string;
}

export const API = '/api/v1';

/** The JSON a job is shown as: its record, with image URLs and where to poll it. */
export function jobView(r: JobRecord): Record<string, unknown> {
  return { ...r, images: r.images.map((name) => `${API}/images/${name}`), status_url: `${API}/jobs/${r.id}` };
}

export async function buildApp(o: AppOptions): Promise<FastifyInstance> {
  const limits = o.limits ?? DEFAULT_LIMITS;
  const schemas = jobSchemas(limits);
  const app = Fastify({ logger: o.logger ?? false, bodyLimit: 64 * 1024 * 1024 });
  if (o.token) requireToken(app, o.token);
  await app.register(multipart, { limits: { fileSize: limits.maxUploadBytes, files: 1, fields: 8 } });
  app.setErrorHandler((error, _request, reply) => sendError(reply, error, limits));

  // With Redis, how many workers are connected (0: jobs wait until one comes); not their names,
  // since /health needs no token.
  app.get('/health', async () => ({ status: 'ok', pending: await o.queue.pending(), ...(o.queue.workers ? { workers: (await o.queue.workers()).length } : {}) }));
  const openapi = openApiDocument(schemas, o.version ?? '0');
  app.get(`${API}/openapi.json`, async () => openapi);

  app.post(`${API}/jobs`, async (request, reply) => {
    const { type, params } = parseJobRequest(request.body, schemas);
    checkNames(type, params, o);
    const record = await o.queue.submit(type, params);
    return reply.code(202).header('location', `${API}/jobs/${record.id}`).send({ id: record.id, status: record.status, status_url: `${API}/jobs/${record.id}` });
  });

  app.get(`${API}/jobs`, async (request) => {
    const query = request.query as { offset?: string; limit?: string };
    const offset = pageNumber(query.offset, 'offset', 0, 0, Number.MAX_SAFE_INTEGER);
    const limit = pageNumber(query.limit, 'limit', 20, 1, 100);
    const { jobs, total } = await o.queue.list({ offset, limit });
    return { jobs: jobs.map(jobView), total, offset, limit };
  });

  app.get(`${API}/jobs/:id`, async (request, reply) => {
    const record = await o.queue.get((request.params as { id: string }).id);
    return record ? jobView(record) : reply.code(404).send({ error: 'no such job', field: 'id' });
  });

  app.post(`${API}/jobs/:id/cancel`, async (request, reply) => {
    const record = await o.queue.cancel((request.params as { id: string }).id);
    return record ? jobView(record) : reply.code(404).send({ error: 'no such job', field: 'id' });
  });

  app.get(`${API}/images/:name`, async (request, reply) => {
    const path = o.store.imagePath((request.params as { name: string }).name);
    if (!path) return reply.code(404).send({ error: 'no such image', field: 'name' });
    // Results and uploads never change; behind a token only the browser may keep them, not a shared proxy.
    const type = path.endsWith('.jpg') ? 'image/jpeg' : path.endsWith('.webp') ? 'image/webp' : 'image/png';
    return reply.type(type).header('cache-control', `${o.token ? 'private' : 'public'}, max-age=31536000, immutable`).send(createReadStream(path));
  });

  app.post(`${API}/uploads`, async (request, reply) => {
    if (!request.isMultipart()) return reply.code(400).send({ error: 'send the image as multipart/form-data, in a field named file', field: 'file' });
    const file = await request.file();
    if (!file) return reply.code(400).send({ error: 'no file in the form', field: 'file' });
    const bytes = await file.toBuffer();
    try {
      return reply.code(201).send({ name: await o.store.saveUpload(bytes) });
    } catch (error) {
      if (!(error instanceof NotAnImageError)) throw error;
      return reply.code(400).send({ error: `${file.filename || 'the upload'}: ${error.message}`, field: 'file' });
    }
  });

  app.get(`${API}/models`, async () => ({
    models: o.registry.models().map((m) => {
      const own = o.registry.defaults(m);
      return { name: m.name, format: m.format, defaultSize: own?.size ?? null, defaultSteps: own?.steps ?? null, defaultGuidance: own?.guidance ?? null, reweightCarry: own?.reweightCarry ?? false };
    }),
    loras: o.registry.loras().map(({ name }) => ({ name })),
    embeddings: o.registry.embeddings().map((e) => ({ name: e.name, token: o.registry.embeddingToken(e) ?? null })),
    controlnets: o.registry.controlnets().map(({ name }) => ({ name })),
    vaes: o.registry.vaes().map(({ name }) => ({ name })),
  }));

  registerEvents(app, o.queue);
  registerSdapi(app, { queue: o.queue, models: o.registry, store: o.store, limits });
  await registerStudio(app);
  return app;
}

/** Every model, LoRA, embedding and input image a job names must exist before it is queued. */
function checkNames(type: string, params: Record<string, unknown>, o: AppOptions): void {
  o.registry.model(params.model as string, 'params.model');
  if (typeof params.vae === 'string') o.registry.vae(params.vae, 'params.vae');
  for (const [i, lora] of ((params.loras as { name: string }[] | undefined) ?? []).entries()) o.registry.lora(lora.name, `params.loras.${i}.name`);
  for (const [i, name] of ((params.embeddings as string[] | undefined) ?? []).entries()) o.registry.embedding(name, `params.embeddings.${i}`);
  const controlnets = (params.controlnet as { model: string; image: string }[] | undefined) ?? [];
  for (const [i, c] of controlnets.entries()) o.registry.controlnet(c.model, `params.controlnet.${i}.model`);
  const inputs: [string, unknown][] = [
    ['params.initImage', params.initImage],
    ['params.mask', params.mask],
    ['params.image', params.image],
    ...((params.images as string[] | undefined) ?? []).map((name, i): [string, unknown] => [`params.images.${i}`, name]),
    ...controlnets.map((c, i): [string, unknown] => [`params.controlnet.${i}.image`, c.image]),
  ];
  for (const [field, name] of inputs) {
    if (typeof name === 'string' && !o.store.hasInput(name)) throw new ParamsError(field, `no upload or result image named ${JSON.stringify(name)} (POST ${API}/uploads first)`);
  }
  if (type === 'train' && !o.registry.dir) throw new ParamsError('type', 'training jobs need a models folder to write to (--models DIR)');
}

function pageNumber(value: string | undefined, field: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new ParamsError(field, `expected an integer from ${min} to ${max}`);
  return n;
}

function sendError(reply: FastifyReply, error: unknown, limits: ServerLimits): FastifyReply {
  if (error instanceof ParamsError) return reply.code(400).send({ error: error.message, field: error.field });
  if (error instanceof UnknownNameError) return reply.code(400).send({ error: `${error.field}: ${error.message}`, field: error.field });
  if (error instanceof QueueFullError) return reply.code(429).header('retry-after', String(error.retryAfterSeconds)).send({ error: error.message });
  const e = error as { statusCode?: number; code?: string; message?: string };
  if (e.code === 'FST_REQ_FILE_TOO_LARGE') return reply.code(413).send({ error: limitMessage('maxUploadBytes', limits, 'the upload'), field: 'file' });
  if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) return reply.code(e.statusCode).send({ error: e.message ?? 'bad request', field: 'body' });
  reply.log.error(error);
  return reply.code(500).send({ error: e.message ?? 'internal error' });
}

