// GET /api/v1/events: the queue's events as Server-Sent Events, one JSON object per `data:` line,
// each tagged with its job id; `?job=ID` keeps one job's. SSE rather than WebSocket: the stream
// only goes one way, it is plain HTTP (curl, fetch streams, proxies), and EventSource reconnects
// by itself.

import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { JobEvent, JobQueue, JobRecord } from './jobs.ts';

const KEEPALIVE_MS = 15_000;

export function registerEvents(app: FastifyInstance, queue: JobQueue): void {
  const open = new Set<ServerResponse>();
  // Streams never end by themselves: close them so that the server can.
  app.addHook('preClose', async () => {
    for (const res of open) res.end();
  });

  app.get('/api/v1/events', async (request, reply) => {
    const job = (request.query as { job?: string }).job;
    const record = job === undefined ? undefined : await queue.get(job);
    if (job !== undefined && !record) return reply.code(404).send({ error: `no job ${job}`, field: 'job' });
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    open.add(res);
    let ended = false;
    const send = (event: JobEvent) => {
      // For one job, the snapshot and the live stream may both carry its end: send it once.
      if (job !== undefined && (event.type === 'completed' || event.type === 'failed' || event.type === 'cancelled')) {
        if (ended) return;
        ended = true;
      }
      res.write(`data: ${JSON.stringify(event)}\n\n`);
    };
    const unsubscribe = queue.subscribe((event) => {
      if (job === undefined || event.id === job) send(event);
    });
    const keepalive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS);
    let stopped = false;
    const stop = () => {
      if (stopped) return;
      stopped = true;
      clearInterval(keepalive);
      unsubscribe();
      open.delete(res);
    };
    // Listened for before any await, and checked once: a client that left while the route's hooks
    // ran has gone already, and its events would never come again. The request's 'close' is the
    // client leaving (its half of the connection ends); the response's, the connection closing.
    request.raw.on('close', stop);
    res.on('close', stop);
    if (request.raw.destroyed || res.destroyed) return stop();
    res.write(': nuri events\n\n');
    // A job that finished (or progressed) before the stream opened: say where it stands.
    const now = record && (await queue.get(record.id));
    if (now) for (const event of snapshot(now)) send(event);
  });
}

function snapshot(r: JobRecord): JobEvent[] {
  if (r.status === 'completed') return [{ type: 'completed', id: r.id, images: r.images, artifacts: r.artifacts }];
  if (r.status === 'failed') return [{ type: 'failed', id: r.id, error: r.error ?? 'failed' }];
  if (r.status === 'cancelled') return [{ type: 'cancelled', id: r.id }];
  if (r.status === 'running') return [{ type: 'progress', id: r.id, step: r.progress.step, total: r.progress.total, phase: r.progress.phase ?? 'loading', etaSeconds: null }];
  return [];
}
