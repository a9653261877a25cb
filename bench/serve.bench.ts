// `npm run bench:serve`: what the server costs over calling the library directly, for the same
// default-model jobs (goal ≤ 5% per job), its throughput with the in-process queue, and its memory
// after 500 jobs against after 50 (no growth beyond the model cache).
//
//   npm run bench:serve [-- --steps 8] [--jobs 20] [--rounds 3] [--throughput 50] [--memory 500] [--redis]
//
// With --redis, the throughput burst also runs through Redis (a private redis-server, as the tests
// start one) with one and then two `nuri worker` processes.
//
// Per-job time: library = generate() + the PNG with its parameters written to a file, one job after another, on a
// loaded model; server = POST /api/v1/jobs → the `completed` event on /api/v1/events → GET of the
// image, one job after another, on the same warm pipeline cache. Rounds interleave the two; the
// figures are medians over all jobs, of wall time and of CPU time (steadier on a shared machine).
// Server and client share this process (so RSS and CPU time are theirs).

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { formatParameters } from '../src/io/parameters.ts';
import { writePng } from '../src/io/png.ts';
import { bundledTokenizer, defaultModelPath } from '../src/models/bundled.ts';
import { generate } from '../src/pipelines/generate.ts';
import { StableDiffusion } from '../src/pipelines/stable-diffusion.ts';
import type { JobEvent } from '../src/server/jobs.ts';
import { startServer } from '../src/server/server.ts';
import { startRedisServer } from '../test/support/redis.ts';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '8' },
    jobs: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '3' },
    throughput: { type: 'string', default: '50' },
    memory: { type: 'string', default: '500' },
    redis: { type: 'boolean', default: false },
  },
});
const steps = Number(values.steps);
const jobsPerRound = Number(values.jobs);
const rounds = Number(values.rounds);
const throughputJobs = Number(values.throughput);
const memoryJobs = Number(values.memory);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

/** A client of one server: submits generate jobs and hears their ends on one events stream. */
async function connect(url: string) {
  const api = `${url}/api/v1`;
  const waiting = new Map<string, (e: JobEvent) => void>();
  const events = await fetch(`${api}/events`);
  void (async () => {
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of events.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!line.startsWith('data: ')) continue;
        const event = JSON.parse(line.slice(6)) as JobEvent;
        if (event.type === 'completed' || event.type === 'failed' || event.type === 'cancelled') waiting.get(event.id)?.(event);
      }
    }
  })().catch(() => {});
  /** One job: POST, its end on the events stream, GET of its image. */
  const job = async (seed: number, jobSteps = steps): Promise<void> => {
    const res = await fetch(`${api}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'generate', params: { prompt: 'a red apple', steps: jobSteps, seed } }) });
    if (res.status !== 202) throw new Error(`submit: ${res.status} ${await res.text()}`);
    const { id } = (await res.json()) as { id: string };
    const end = await new Promise<JobEvent>((resolve) => waiting.set(id, resolve));
    waiting.delete(id);
    if (end.type !== 'completed') throw new Error(`job ${id}: ${JSON.stringify(end)}`);
    await (await fetch(`${api}/images/${end.images[0]}`)).arrayBuffer();
  };
  return { job, close: () => events.body?.cancel().catch(() => {}) };
}

/** Jobs per second for a burst of `count` jobs submitted at once. */
async function burst(job: (seed: number) => Promise<void>, count: number, firstSeed: number): Promise<number> {
  const start = performance.now();
  await Promise.all(Array.from({ length: count }, (_, i) => job(firstSeed + i)));
  return count / ((performance.now() - start) / 1000);
}

const server = await startServer({ outputs: mkdtempSync(join(os.tmpdir(), 'nuri-bench-serve-')), port: 0, queueSize: 10_000 });
const client = await connect(server.url);
const serverJob = client.job;

const libraryOut = mkdtempSync(join(os.tmpdir(), 'nuri-bench-library-'));
const sd = StableDiffusion.load(defaultModelPath(), { defaultTokenizer: bundledTokenizer, releaseSessions: false });
async function libraryJob(seed: number): Promise<void> {
  const { images, seeds } = await generate(sd, { prompts: ['a red apple'], steps, seed, onProgress: () => {} });
  const parameters = formatParameters({ prompt: 'a red apple', steps, sampler: 'DDIM', guidance: 7.5, seed: seeds[0], width: images[0].width, height: images[0].height, model: 'default' });
  await writePng(join(libraryOut, `${seed}.png`), images[0], { parameters });
}

/** Wall time and CPU time (all threads of this process: ONNX Runtime's, the server's, the client's), ms. */
async function timed(run: () => Promise<void>): Promise<{ wall: number; cpu: number }> {
  const [t, c] = [performance.now(), process.cpuUsage()];
  await run();
  const used = process.cpuUsage(c);
  return { wall: performance.now() - t, cpu: (used.user + used.system) / 1000 };
}

console.log(`bench:serve — default model ${sd.defaultSize}×${sd.defaultSize}, ${steps} DDIM steps, guidance 7.5; ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
const cpuStart = process.cpuUsage();

// Warm both paths (model load, graph compile, pipeline cache).
for (let i = 0; i < 2; i++) {
  await libraryJob(i);
  await serverJob(i);
}

const library: { wall: number; cpu: number }[] = [];
const served: { wall: number; cpu: number }[] = [];
for (let round = 0; round < rounds; round++) {
  for (let i = 0; i < jobsPerRound; i++) library.push(await timed(() => libraryJob(1000 + i)));
  for (let i = 0; i < jobsPerRound; i++) served.push(await timed(() => serverJob(1000 + i)));
}
for (const kind of ['wall', 'cpu'] as const) {
  const [lib, srv] = [median(library.map((t) => t[kind])), median(served.map((t) => t[kind]))];
  console.log(`per job, ${kind} time: library ${lib.toFixed(1)} ms, server ${srv.toFixed(1)} ms (medians of ${library.length}); overhead ${(((srv - lib) / lib) * 100).toFixed(1)}% (${(srv - lib).toFixed(1)} ms)`);
}

// Throughput: a burst of jobs submitted at once, run one at a time by the in-process queue.
console.log(`throughput, in-process queue: ${(await burst(serverJob, throughputJobs, 2000)).toFixed(2)} jobs/s (${throughputJobs} jobs)`);

// Memory: RSS after 50 and after `memoryJobs` two-step jobs in all (bursts of 50).
const rss: Record<number, number> = {};
for (let done = 0; done < memoryJobs; done += 50) {
  await Promise.all(Array.from({ length: 50 }, (_, i) => serverJob(3000 + done + i, 2)));
  if (done + 50 === 50 || done + 50 >= memoryJobs) rss[done + 50] = process.memoryUsage().rss;
}
const marks = Object.keys(rss).map(Number);
console.log(`memory: RSS ${marks.map((m) => `${mib(rss[m])} after ${m} jobs`).join(', ')}; growth ${mib(rss[marks.at(-1)!] - rss[marks[0]])}`);
const cpu = process.cpuUsage(cpuStart);
console.log(`CPU time ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s; load after ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

client.close();
await server.app.close();

// The same burst on Redis (BullMQ) with one and then two `nuri worker` processes on this machine,
// then two that keep to one ONNX Runtime thread each; with the CPU time the workers spent on it.
if (values.redis) {
  const redis = await startRedisServer();
  for (const { workers, threads } of [{ workers: 1 }, { workers: 2 }, { workers: 2, threads: 1 }]) {
    const outputs = mkdtempSync(join(os.tmpdir(), 'nuri-bench-serve-redis-'));
    const redisServer = await startServer({ outputs, port: 0, queueSize: 10_000, redis: redis.url });
    const env = { ...process.env, ...(threads ? { NURI_THREADS: String(threads) } : {}) };
    const children = Array.from({ length: workers }, () => spawn(process.execPath, ['bin/nuri.js', 'worker', '--redis', redis.url, '--models', redisServer.modelsDir], { env, stdio: 'ignore' }));
    const redisClient = await connect(redisServer.url);
    await burst(redisClient.job, 2 * workers, 0); // each worker loads the model
    const cpuBefore = children.map((child) => cpuSeconds(child.pid!));
    const rate = await burst(redisClient.job, throughputJobs, 2000);
    const workersCpu = children.reduce((sum, child, i) => sum + cpuSeconds(child.pid!) - cpuBefore[i], 0);
    const label = `${workers} worker(s)${threads ? `, NURI_THREADS=${threads} each` : ''}`;
    console.log(`throughput, Redis with ${label}: ${rate.toFixed(2)} jobs/s (${throughputJobs} jobs; workers' CPU time ${workersCpu.toFixed(1)} s; load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')})`);
    redisClient.close();
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map((child) => new Promise((resolve) => child.once('exit', resolve))));
    await redisServer.app.close();
  }
  await redis.stop();
}

/** User + system CPU seconds of a process so far, from /proc (Linux; clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  // utime and stime are fields 14 and 15 of the line: the 12th and 13th after "pid (comm) ".
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
process.exit(0);
