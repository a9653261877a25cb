// Child process that writes ONNX Runtime's optimised form of cached graphs. session.ts starts it
// when a process whose graphs ran for the first time exits (or when asked, optimizeCachedGraphs):
// the first run never waits for the optimisation, and the two never hold their memory at once. One
// graph is optimised at a time per cache (a lock file holding the builder's pid), since each holds
// a model's weights. The session is created only to have ONNX Runtime save the optimised graph, so
// it asks for nothing a running session needs (no memory arena, no prepacked weight copies). The
// finished pair (graph + weights file) is published by one link: no process reads a half-written one.
// Plain JavaScript, so that it starts with bare `node` whatever loader the parent runs under.
//
//   node optimize-graph.mjs '[{"model", "output", "weights", "publish", "lock", "stats", "level", "threads", "executionProvider"}, …]'
//
// Exit code 0 when every graph was published (by this process or another).

import { existsSync, linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';

const jobs = JSON.parse(process.argv[2] ?? '[]');
const KEYS = ['model', 'output', 'weights', 'publish', 'lock', 'stats'];
if (!Array.isArray(jobs) || jobs.some((job) => KEYS.some((key) => typeof job[key] !== 'string'))) {
  process.stderr.write(`optimize-graph: expected a list of {${KEYS.join(', ')}}, got ${process.argv[2]}\n`);
  process.exit(2);
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/** Takes a cache's builder lock, waiting while a live builder holds it; a dead one's is taken over. */
async function lock(path) {
  for (;;) {
    try {
      writeFileSync(path, String(process.pid), { flag: 'wx' });
      return;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
    let holder = Number.NaN;
    try {
      holder = Number(readFileSync(path, 'utf8').trim());
    } catch {
      continue; // released meanwhile
    }
    if (holder > 0 && !alive(holder)) rmSync(path, { force: true });
    else await new Promise((r) => setTimeout(r, 200));
  }
}

/** Writes and publishes one optimised graph; true when it is published (here or by another process). */
async function build(job) {
  // Temporary names carry this process's id ("$PID" in the job), so a later run's cleaning of dead
  // processes' files never takes them while this one writes.
  const output = job.output.replaceAll('$PID', String(process.pid));
  const weights = job.weights.replaceAll('$PID', String(process.pid));
  const weightsPath = join(dirname(output), weights);
  if (!existsSync(job.model)) return false; // the cache was removed meanwhile
  await lock(job.lock);
  try {
    if (existsSync(job.publish)) return true;
    const start = performance.now();
    const session = await ort.InferenceSession.create(job.model, {
      executionProviders: [job.executionProvider ?? 'cpu'],
      graphOptimizationLevel: job.level ?? 'all',
      enableCpuMemArena: false,
      enableMemPattern: false,
      logSeverityLevel: 3,
      intraOpNumThreads: job.threads ?? 1,
      optimizedModelFilePath: output,
      extra: { session: { disable_prepacking: '1', optimized_model_external_initializers_file_name: weights } },
    });
    await session.release();
    try {
      linkSync(output, job.publish);
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      rmSync(weightsPath, { force: true });
      return true;
    }
    writeFileSync(job.stats, JSON.stringify({ seconds: (performance.now() - start) / 1000, peakRssBytes: process.resourceUsage().maxRSS * 1024 }));
    return true;
  } catch (e) {
    process.stderr.write(`optimize-graph: ${job.model}: ${e instanceof Error ? e.message : e}\n`);
    rmSync(weightsPath, { force: true });
    return false;
  } finally {
    rmSync(output, { force: true });
    rmSync(job.lock, { force: true });
  }
}

let published = true;
for (const job of jobs) {
  try {
    if (!(await build(job))) published = false;
  } catch (e) {
    process.stderr.write(`optimize-graph: ${e instanceof Error ? e.message : e}\n`);
    published = false;
  }
}
process.exit(published ? 0 : 1);
