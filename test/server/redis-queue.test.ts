// The Redis queue on a real redis-server: one server-side RedisQueue, workers in this process and
// in child processes, the sleepy runner (no model). Spreading, tagged events, cancel, a worker
// SIGKILLed mid-job, inputs and results through Redis, and a server restart.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { createImage } from '../../src/io/image.ts';
import { encodePng, parsePngText } from '../../src/io/png.ts';
import { QueueFullError, type JobEvent, type JobRecord, type JobRunner } from '../../src/server/jobs.ts';
import { QUEUE_NAME, redisKeys } from '../../src/server/redis-protocol.ts';
import { RedisQueue } from '../../src/server/redis-queue.ts';
import { startRedisWorker, type RedisWorker } from '../../src/server/redis-worker.ts';
import { JobStore } from '../../src/server/store.ts';
import { startRedisServer, type RedisServer } from '../support/redis.ts';
import { sleepyRunner, startsFile, type SleepyParams } from '../support/sleepy-runner.ts';

/** Short, so that a killed worker's job is handed on within seconds. */
const LOCK_MS = 2000;

let redis: RedisServer;
let dir: string;
let prefix: string;
let testIndex = 0;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await startRedisServer();
  dir = mkdtempSync(join(tmpdir(), 'nuri-redis-queue-'));
}, 300_000);

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Each test gets its own key prefix (its own BullMQ queue) and outputs folder. */
function freshTest(): { outputs: string; startsDir: string } {
  prefix = `t${++testIndex}`;
  return { outputs: join(dir, `outputs-${prefix}`), startsDir: dir };
}

async function openQueue(outputs: string): Promise<RedisQueue> {
  const queue = await RedisQueue.open({ url: redis.url, store: new JobStore(outputs), modelsDir: join(outputs, 'models'), queueSize: 8, prefix });
  cleanups.push(() => queue.close());
  return queue;
}

async function startWorker(id: string): Promise<RedisWorker> {
  const worker = await startRedisWorker({ url: redis.url, id, prefix, runner: sleepyRunner({ startsDir: dir, workerId: id }), lockDurationMs: LOCK_MS });
  cleanups.push(() => worker.close());
  return worker;
}

function submit(queue: RedisQueue, params: SleepyParams): Promise<JobRecord> {
  return queue.submit('generate', params as unknown as Record<string, unknown>);
}

function starts(jobId: string): string[] {
  const file = startsFile(dir, jobId);
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n') : [];
}

/** Resolves at the first event of `id` that `match` accepts. */
function eventOf(queue: RedisQueue, id: string, match: (e: JobEvent) => boolean): Promise<JobEvent> {
  return new Promise((resolve) => {
    const stop = queue.subscribe((e) => {
      if (e.id === id && match(e)) {
        stop();
        resolve(e);
      }
    });
  });
}

const progressAt = (step: number) => (e: JobEvent) => e.type === 'progress' && e.step >= step;

describe('RedisQueue with BullMQ workers', () => {
  test('jobs spread over two workers; events arrive tagged with their job and in order; result PNGs written whole', async () => {
    const { outputs } = freshTest();
    const queue = await openQueue(outputs);
    const events: JobEvent[] = [];
    queue.subscribe((e) => events.push(e));
    await startWorker('w1');
    await startWorker('w2');
    const submitted = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => submit(queue, { steps: 3, stepMs: 150, shade: i / 5 })));
    const done = await Promise.all(submitted.map((job) => queue.wait(job.id)));

    expect(done.map((j) => j.status)).toEqual(Array(6).fill('completed'));
    const workers = done.map((j) => j.info.worker);
    expect(new Set(workers)).toEqual(new Set(['w1', 'w2']));
    for (const job of done) {
      expect(starts(job.id)).toEqual([job.info.worker]);
      expect(job.info.ranOn).toBe(job.info.worker);
      expect(job.images).toEqual([`${job.id}-1.png`]);
      const png = readFileSync(join(outputs, 'images', job.images[0]));
      expect(parsePngText(png).parameters).toBe(`sleepy job ${job.id}\nSteps: 3, Worker: ${job.info.worker}`);
    }

    const ids = new Set(submitted.map((j) => j.id));
    expect(events.every((e) => ids.has(e.id))).toBe(true);
    for (const job of done) {
      const own = events.filter((e) => e.id === job.id);
      // Queued (with its place in line, which only moves forward), then started, then the steps.
      const start = own.findIndex((e) => e.type === 'started');
      expect(start).toBeGreaterThan(0);
      const positions = own.slice(0, start).map((e) => (e.type === 'queued' ? e.position : NaN));
      expect(positions.every((p, i) => p >= 1 && (i === 0 || p <= positions[i - 1]))).toBe(true);
      expect(own.slice(start + 1).every((e) => e.type !== 'queued' && e.type !== 'started')).toBe(true);
      expect(own.flatMap((e) => (e.type === 'progress' && e.phase === 'sampling' ? [e.step] : []))).toEqual([1, 2, 3]);
      expect(own.at(-2)).toMatchObject({ type: 'progress', phase: 'saving' });
      const previews = own.filter((e) => e.type === 'preview');
      expect(previews).toHaveLength(3);
      expect((previews[0] as { image: string }).image).toMatch(/^data:image\/png;base64,iVBORw0KGgo/);
      expect(own.at(-1)).toEqual({ type: 'completed', id: job.id, images: job.images, artifacts: [] });
      expect(own.filter((e) => e.type === 'completed')).toHaveLength(1);
    }
    // Nothing of a finished job is left in Redis but BullMQ's own bookkeeping.
    expect(await queue.pending()).toBe(0);
  });

  test('cancel: a queued job leaves at once, a running one stops between steps, the job between them completes', async () => {
    const { outputs } = freshTest();
    const queue = await openQueue(outputs);
    await startWorker('solo');
    const long = await submit(queue, { steps: 60, stepMs: 100 });
    const middle = await submit(queue, { steps: 2, stepMs: 50, shade: 0.9 });
    const last = await submit(queue, { steps: 2, stepMs: 50 });
    await eventOf(queue, long.id, progressAt(2));

    const cancelledQueued = await queue.cancel(last.id);
    expect(cancelledQueued?.status).toBe('cancelled');
    expect(await queue.pending()).toBe(1);

    const reachedStep: number[] = [];
    queue.subscribe((e) => e.id === long.id && e.type === 'progress' && reachedStep.push(e.step));
    expect((await queue.cancel(long.id))?.status).toBe('running');
    const cancelled = await queue.wait(long.id);
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.error).toBeNull();
    expect(Math.max(2, ...reachedStep)).toBeLessThan(60);

    expect((await queue.wait(middle.id)).status).toBe('completed');
    expect(starts(long.id)).toEqual(['solo']);
    expect(starts(middle.id)).toEqual(['solo']);
    expect(starts(last.id)).toEqual([]);
    expect(await queue.cancel('job-000000000000-000000')).toBeUndefined();
  });

  test('a worker SIGKILLed mid-job: another worker takes the job over and it completes exactly once', async () => {
    const { outputs } = freshTest();
    const queue = await openQueue(outputs);
    const events: JobEvent[] = [];
    queue.subscribe((e) => events.push(e));
    const doomed = await spawnWorker('doomed');
    const job = await submit(queue, { steps: 16, stepMs: 100 });
    await eventOf(queue, job.id, progressAt(3));
    expect(starts(job.id)).toEqual(['doomed']);
    doomed.kill('SIGKILL');
    await new Promise((resolve) => doomed.once('exit', resolve));

    await startWorker('rescuer');
    const done = await queue.wait(job.id);
    expect(done.status).toBe('completed');
    expect(done.info.worker).toBe('rescuer');
    expect(done.info.restarts).toBe(1);
    expect(starts(job.id)).toEqual(['doomed', 'rescuer']);
    const own = events.filter((e) => e.id === job.id).map((e) => e.type);
    expect(own.filter((t) => t === 'completed')).toHaveLength(1);
    expect(own.filter((t) => t === 'started')).toHaveLength(2);
    expect(existsSync(join(outputs, 'images', `${job.id}-1.png`))).toBe(true);
  });

  test('a job whose second worker dies too is marked failed, not lost and not run a third time', async () => {
    const { outputs } = freshTest();
    const queue = await openQueue(outputs);
    const first = await spawnWorker('doomed-1');
    const job = await submit(queue, { steps: 40, stepMs: 100 });
    await eventOf(queue, job.id, progressAt(2));
    first.kill('SIGKILL');
    const second = await spawnWorker('doomed-2');
    await eventOf(queue, job.id, (e) => e.type === 'started');
    await eventOf(queue, job.id, progressAt(2));
    second.kill('SIGKILL');
    await startWorker('bystander');
    const done = await queue.wait(job.id);
    expect(done.status).toBe('failed');
    expect(done.error).toMatch(/stalled/);
    expect(starts(job.id)).toEqual(['doomed-1', 'doomed-2']);
  });

  test('inputs and training artifacts travel through Redis; a failing job fails once with its message; history and results survive a server restart, and a job finished meanwhile is collected', async () => {
    const { outputs } = freshTest();
    const store = new JobStore(outputs);
    const upload = await store.saveUpload(await encodePng(createImage(16, 16, [1, 0, 0])));
    const first = await openQueue(outputs);
    await startWorker('w');
    const other = await store.saveUpload(await encodePng(createImage(24, 8, [0, 1, 0])));
    const artifact = { path: 'loras/sleepy.safetensors', text: 'not really weights' };
    const withInput = await first.wait((await submit(first, { steps: 1, stepMs: 10, initImage: upload, images: [other, upload], artifact })).id);
    expect(withInput.status).toBe('completed');
    const size = (name: string) => readFileSync(join(outputs, 'uploads', name)).length;
    expect(withInput.info).toMatchObject({ initImageBytes: size(upload), imagesBytes: [size(other), size(upload)] });
    expect(withInput.artifacts).toEqual([artifact.path]);
    expect(readFileSync(join(outputs, 'models', artifact.path), 'utf8')).toBe(artifact.text);

    const failing = await first.wait((await submit(first, { steps: 1, stepMs: 10, fail: 'the runner gave up' })).id);
    expect(failing).toMatchObject({ status: 'failed', error: 'the runner gave up' });
    expect(starts(failing.id)).toEqual(['w']);

    const unfinished = await submit(first, { steps: 8, stepMs: 100 });
    await eventOf(first, unfinished.id, progressAt(1));
    await first.close();
    // The server is down; the worker finishes the job and leaves its result in Redis.
    const bull = new Queue(QUEUE_NAME, { connection: { url: redis.url }, prefix });
    cleanups.push(() => bull.close());
    while ((await bull.getJobState(unfinished.id)) !== 'completed') await new Promise((r) => setTimeout(r, 100));

    const second = await openQueue(outputs);
    const collected = await second.get(unfinished.id);
    expect(collected).toMatchObject({ status: 'completed', images: [`${unfinished.id}-1.png`], info: { worker: 'w' } });
    expect(parsePngText(readFileSync(join(outputs, 'images', collected!.images[0]))).parameters).toContain(unfinished.id);
    expect(await second.get(withInput.id)).toEqual(withInput);
    const history = await second.list({ offset: 0, limit: 10 });
    expect(history.total).toBe(3);
    expect(history.jobs.map((j) => j.id)).toEqual([unfinished.id, failing.id, withInput.id]);
    expect(await bull.getJob(unfinished.id)).toBeUndefined();
  });

  test('a full queue refuses with QueueFullError; a cancelled waiting job frees its place', async () => {
    const { outputs } = freshTest();
    const queue = await RedisQueue.open({ url: redis.url, store: new JobStore(outputs), modelsDir: join(outputs, 'models'), queueSize: 2, prefix });
    cleanups.push(() => queue.close());
    const [first] = await Promise.all([submit(queue, { steps: 1, stepMs: 1 }), submit(queue, { steps: 1, stepMs: 1 })]);
    const refused = await submit(queue, { steps: 1, stepMs: 1 }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(QueueFullError);
    expect(refused).toMatchObject({ limit: 2, retryAfterSeconds: expect.any(Number) });
    expect((await queue.list({ offset: 0, limit: 10 })).total).toBe(2);
    expect((await queue.cancel(first.id))?.status).toBe('cancelled');
    expect(await queue.pending()).toBe(1);
    expect((await submit(queue, { steps: 1, stepMs: 1 })).status).toBe('queued');
  });

  test('jobs Redis lost (flushed, or restarted without persistence) are failed at the next start, or cancelled on request', async () => {
    const { outputs } = freshTest();
    const first = await openQueue(outputs);
    const lost = await submit(first, { steps: 1, stepMs: 1 });
    const cancelled = await submit(first, { steps: 1, stepMs: 1 });
    const client = new Redis(redis.url);
    await client.flushall();
    client.disconnect();
    expect((await first.cancel(cancelled.id))?.status).toBe('cancelled');
    await first.close();
    const second = await openQueue(outputs);
    expect(await second.get(lost.id)).toMatchObject({ status: 'failed', error: expect.stringMatching(/no longer in Redis/) });
    expect((await second.get(cancelled.id))?.status).toBe('cancelled');
  });

  test('workers build previews only while someone watches: event streams on any server (counted in Redis, with an expiry), or a preview asked for', async () => {
    const { outputs } = freshTest();
    const queue = await openQueue(outputs);
    const other = await openQueue(`${outputs}-other`); // a second server on the same Redis
    const worker = await startRedisWorker({ url: redis.url, id: 'watched', prefix, runner: watchRecordingRunner() });
    cleanups.push(() => worker.close());
    const client = new Redis(redis.url);
    cleanups.push(async () => client.disconnect());
    const key = redisKeys(prefix).watchers;
    const count = async (expected: string | null) => {
      while ((await client.get(key)) !== expected) await sleep(20);
    };
    const wanted = async (q: RedisQueue, params = { steps: 3, stepMs: 30 }) => (await q.wait((await submit(q, params)).id)).info.wanted;

    expect(await wanted(queue)).toEqual([false, false, false]);
    const events: JobEvent[] = [];
    const stopFirst = queue.subscribe((e) => events.push(e));
    await count('1');
    expect(await client.pttl(key)).toBeGreaterThan(0); // lapses unless a server renews it
    const watchedJob = await submit(queue, { steps: 3, stepMs: 30 });
    expect((await queue.wait(watchedJob.id)).info.wanted).toEqual([true, true, true]);
    expect(events.filter((e) => e.id === watchedJob.id && e.type === 'preview')).toHaveLength(3);

    const stopOther = other.subscribe(() => {});
    await count('2');
    stopFirst();
    stopFirst(); // twice counts once
    await count('1');
    expect(await wanted(queue)).toEqual([true, true, true]); // the other server still watches
    stopOther();
    await count(null);
    expect(await wanted(queue)).toEqual([false, false, false]);

    // A1111's /progress asks for the running job's preview: its later steps build one.
    const asked = await submit(queue, { steps: 15, stepMs: 60 });
    while ((await queue.get(asked.id))!.progress.step < 2) await sleep(20);
    queue.preview(asked.id);
    const flags = (await queue.wait(asked.id)).info.wanted as boolean[];
    expect(flags[0]).toBe(false);
    expect(flags.at(-1)).toBe(true);
    // Forgotten with the job, once its results are collected (just after its waiters hear of it).
    while (await client.exists(redisKeys(prefix).previewAsked(asked.id))) await sleep(20);
  });

  test('an unreachable or malformed Redis URL fails at once, naming it', async () => {
    const store = new JobStore(join(dir, 'outputs-unreachable'));
    await expect(RedisQueue.open({ url: 'redis://127.0.0.1:1', store, modelsDir: dir })).rejects.toThrow(/cannot reach Redis at redis:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/);
    await expect(startRedisWorker({ url: 'localhost:6379', runner: sleepyRunner({ startsDir: dir, workerId: 'x' }) })).rejects.toThrow(/expected a URL like redis:\/\/host:6379/);
  });
});

/** Records per step whether the worker was told anyone watches (in info.wanted), and sends a preview only then. */
function watchRecordingRunner(): JobRunner {
  return async (job, ctx) => {
    const { steps, stepMs } = job.params as { steps: number; stepMs: number };
    const wanted: boolean[] = [];
    for (let step = 1; step <= steps; step++) {
      await sleep(stepMs);
      wanted.push(ctx.wantsPreview?.() ?? true);
      ctx.progress({ step, total: steps, phase: 'sampling', preview: wanted.at(-1) ? await encodePng(createImage(4, 4, [0, 0, 1])) : undefined });
    }
    const parameters = `watched job ${job.id}`;
    return { images: [{ png: await encodePng(createImage(8, 8, [0, 0, 1]), { parameters }), parameters }], artifacts: [], info: { wanted } };
  };
}

/** A worker in its own process, as `nuri worker` runs; resolves once it waits for jobs. */
async function spawnWorker(id: string): Promise<ChildProcess> {
  const script = resolve(import.meta.dirname, '../support/sleepy-worker.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', script, redis.url, id, dir, String(LOCK_MS), prefix], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`worker ${id} exited with ${code} before it was ready`)));
  });
  return child;
}
