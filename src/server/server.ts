// Puts a server together: the store under --outputs, the model registry and pipeline cache, the
// runner, a queue (in-process, or Redis with --redis) and the HTTP app; and starts it listening.
// Tests build one per case on port 0; `nuri serve` builds one from its flags.

import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.ts';
import { checkBinding } from './auth.ts';
import type { JobQueue, JobRunner } from './jobs.ts';
import { LocalQueue } from './local-queue.ts';
import { ModelRegistry } from './models.ts';
import { PipelineCache } from './pipeline-cache.ts';
import { RedisQueue } from './redis-queue.ts';
import { createRunner } from './runner.ts';
import { DEFAULT_LIMITS, type ServerLimits } from './schemas.ts';
import { JobStore } from './store.ts';

export interface ServerOptions {
  host?: string;
  port?: number;
  /** The models folder (default OUTPUTS/models): models, loras/, embeddings/, and what training jobs make. */
  models?: string;
  outputs: string;
  queueSize?: number;
  maxLoaded?: number;
  /** An AutoencoderTiny folder (TAESD) that draws the step previews of every model it fits. */
  previewVae?: string;
  /** Run jobs through Redis (BullMQ) at this URL instead of in this process. */
  redis?: string;
  token?: string;
  limits?: Partial<ServerLimits>;
  logger?: boolean;
}

export interface ServerParts {
  app: FastifyInstance;
  queue: JobQueue;
  store: JobStore;
  registry: ModelRegistry;
  cache: PipelineCache;
  modelsDir: string;
}

export interface QueueDeps {
  store: JobStore;
  runner: JobRunner;
  modelsDir: string;
}

/** The queue the server submits to: in-process by default, Redis (BullMQ) with `redis`. */
export async function createQueue(o: Pick<ServerOptions, 'redis' | 'queueSize'>, deps: QueueDeps): Promise<JobQueue> {
  if (o.redis) return RedisQueue.open({ url: o.redis, store: deps.store, modelsDir: deps.modelsDir, queueSize: o.queueSize });
  return LocalQueue.open({ ...deps, queueSize: o.queueSize });
}

export async function createServer(o: ServerOptions): Promise<ServerParts> {
  const outputs = resolve(o.outputs);
  const modelsDir = resolve(o.models ?? join(outputs, 'models'));
  const store = new JobStore(outputs);
  const registry = new ModelRegistry(modelsDir);
  const cache = new PipelineCache(registry, o.maxLoaded ?? 1, o.previewVae);
  const runner = createRunner({ registry, cache });
  const queue = await createQueue(o, { store, runner, modelsDir });
  const app = await buildApp({ queue, registry, store, limits: { ...DEFAULT_LIMITS, ...o.limits }, token: o.token, logger: o.logger });
  app.addHook('onClose', async () => {
    await queue.close();
    await cache.clear();
  });
  return { app, queue, store, registry, cache, modelsDir };
}

/** Builds and starts a server; refuses a non-loopback host without a token. Resolves with its URL. */
export async function startServer(o: ServerOptions): Promise<ServerParts & { url: string }> {
  const host = o.host ?? '127.0.0.1';
  checkBinding(host, o.token);
  const parts = await createServer(o);
  await parts.app.listen({ host, port: o.port ?? 7860 });
  const address = parts.app.server.address();
  const port = typeof address === 'object' && address ? address.port : o.port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return { ...parts, url: `http://${shown}:${port}` };
}
