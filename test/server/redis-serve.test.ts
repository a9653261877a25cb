// `nuri serve --redis` end to end with real `nuri worker` processes on the bundled default model:
// jobs over HTTP spread over two workers, events on the SSE stream tagged with their jobs, images
// served by the server (they came back through Redis), a worker SIGKILLed mid-job, and the
// history and images after a server restart.

import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseParameters } from '../../src/io/parameters.ts';
import { parsePngText } from '../../src/io/png.ts';
import type { JobEvent, JobRecord } from '../../src/server/jobs.ts';
import { startRedisServer, type RedisServer } from '../support/redis.ts';
import { openEvents, tempOutputs, testServer, type TestServer } from './helpers.ts';

const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'nuri.js');
/** Long enough for a model load on a busy machine, short enough for a quick hand-over. */
const LOCK_MS = 5000;

let redis: RedisServer;
let outputs: string;
let server: TestServer;
const workers = new Map<string, ChildProcess>();

beforeAll(async () => {
  redis = await startRedisServer();
  outputs = tempOutputs();
  server = await testServer({ outputs, redis: redis.url });
}, 300_000);

afterAll(async () => {
  for (const id of workers.keys()) await stopWorker(id, 'SIGKILL');
  await server?.close();
  await redis?.stop();
});

function startWorker(id: string): Promise<void> {
  const child = spawn(process.execPath, [BIN, 'worker', '--redis', redis.url, '--id', id, '--lock-duration', String(LOCK_MS), '--models', `${outputs}/models`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  workers.set(id, child);
  return new Promise((resolve, reject) => {
    let log = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes('waiting for jobs')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`nuri worker ${id} exited with ${code}: ${log}`)));
  });
}

async function stopWorker(id: string, signal: NodeJS.Signals): Promise<void> {
  const child = workers.get(id)!;
  workers.delete(id);
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

function firstEvent(id: string, match: (e: JobEvent) => boolean): Promise<JobEvent> {
  return new Promise((resolve) => {
    const stop = server.queue.subscribe((e) => {
      if (e.id === id && match(e)) {
        stop();
        resolve(e);
      }
    });
  });
}

describe('nuri serve --redis with nuri worker processes', () => {
  /** Jobs that completed, and the one cancelled, for the restart test. */
  const done: JobRecord[] = [];
  let cancelledId = '';

  test('jobs spread over two workers; SSE events tagged; images served from the server after coming back through Redis', async () => {
    await Promise.all([startWorker('real-1'), startWorker('real-2')]);
    expect((await server.request('GET', '/health')).body).toEqual({ status: 'ok', pending: 0, workers: 2 });
    const ids: string[] = [];
    const completedOnStream = new Set<string>();
    const stream = openEvents(`${server.url}/api/v1/events`, (e) => {
      if (e.type === 'completed') completedOnStream.add(e.id);
      return ids.length === 4 && ids.every((id) => completedOnStream.has(id));
    });
    await stream.opened;
    for (let seed = 0; seed < 4; seed++) ids.push(await server.submit('generate', { prompt: 'red apple', steps: 4, seed }));
    done.push(...(await Promise.all(ids.map((id) => server.queue.wait(id)))));

    expect(done.map((j) => j.status)).toEqual(['completed', 'completed', 'completed', 'completed']);
    expect(new Set(done.map((j) => j.info.worker))).toEqual(new Set(['real-1', 'real-2']));
    for (const [seed, job] of done.entries()) {
      const res = await fetch(`${server.url}/api/v1/images/${job.images[0]}`);
      expect(res.status).toBe(200);
      const parameters = parseParameters(parsePngText(new Uint8Array(await res.arrayBuffer())).parameters);
      expect(parameters).toMatchObject({ prompt: 'red apple', steps: 4, seed });
    }

    const events = await stream.events;
    expect(events.every((e) => ids.includes(e.id))).toBe(true);
    for (const id of ids) {
      const types = events.filter((e) => e.id === id).map((e) => e.type);
      expect(types[0]).toBe('queued');
      expect(types).toContain('started');
      expect(types).toContain('preview');
      expect(types.filter((t) => t === 'progress').length).toBeGreaterThanOrEqual(4);
      expect(types.at(-1)).toBe('completed');
    }
  });

  test('a worker SIGKILLed mid-job: the other worker runs the job again and it completes exactly once', async () => {
    await stopWorker('real-2', 'SIGTERM');
    const events: JobEvent[] = [];
    const watching = server.queue.subscribe((e) => events.push(e));
    const id = await server.submit('generate', { prompt: 'blue heart', steps: 80, seed: 7 });
    await firstEvent(id, (e) => e.type === 'progress' && e.phase === 'sampling' && e.step >= 2);
    await stopWorker('real-1', 'SIGKILL');
    await startWorker('real-3');
    const job = await server.queue.wait(id);
    watching();
    done.push(job);

    expect(job.status).toBe('completed');
    expect(job.info.worker).toBe('real-3');
    expect(job.info.restarts).toBe(1);
    const own = events.filter((e) => e.id === id).map((e) => e.type);
    expect(own.filter((t) => t === 'started')).toHaveLength(2);
    expect(own.filter((t) => t === 'completed')).toHaveLength(1);
    expect((await fetch(`${server.url}/api/v1/images/${job.images[0]}`)).status).toBe(200);
  });

  test('cancel over HTTP stops a running job on its worker between two steps; the job after it completes', async () => {
    const running = await server.submit('generate', { prompt: 'green heart', steps: 120, seed: 1 });
    const next = await server.submit('generate', { prompt: 'green heart', steps: 4, seed: 2 });
    await firstEvent(running, (e) => e.type === 'progress' && e.phase === 'sampling' && e.step >= 2);
    expect((await server.request('POST', `/api/v1/jobs/${running}/cancel`)).status).toBe(200);
    const cancelled = await server.queue.wait(running);
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.progress.step).toBeLessThan(120);
    expect(cancelled.images).toEqual([]);
    cancelledId = running;
    const after = await server.queue.wait(next);
    expect(after).toMatchObject({ status: 'completed', info: { worker: 'real-3' } });
    done.push(after);
  });

  test('after a server restart the history lists every job and the images are still served', async () => {
    const before = await Promise.all(done.map(async (j) => Buffer.from(await (await fetch(`${server.url}/api/v1/images/${j.images[0]}`)).arrayBuffer())));
    await server.close();
    server = await testServer({ outputs, redis: redis.url });
    const history = await server.request('GET', '/api/v1/jobs?limit=20');
    expect(history.status).toBe(200);
    const listed = history.body.jobs as { id: string; status: string }[];
    expect(listed.map((j) => j.id).sort()).toEqual([...done.map((j) => j.id), cancelledId].sort());
    expect(listed.every((j) => j.status === (j.id === cancelledId ? 'cancelled' : 'completed'))).toBe(true);
    for (const [i, job] of done.entries()) {
      const res = await fetch(`${server.url}/api/v1/images/${job.images[0]}`);
      expect(Buffer.from(await res.arrayBuffer()).equals(before[i])).toBe(true);
    }
  });
});
