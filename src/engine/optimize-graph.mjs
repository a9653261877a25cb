// Child process that writes ONNX Runtime's optimised form of a cached graph once the process that
// started it (session.ts, on a graph's first use) has exited or says "now" by closing our stdin: the
// first run does not wait for the optimisation, and the two never hold their memory at once. One
// builder runs at a time per cache (a lock file holding its pid), since each holds a model's weights.
// The session is created only to have ONNX Runtime save the optimised graph, so it asks for nothing a
// session that runs would need (no memory arena, no prepacked weight copies). The finished pair
// (graph + weights file) is published by one link, so no process ever reads a half-written one.
// Plain JavaScript, so that it starts with bare `node` whatever loader the parent runs under.
//
//   node optimize-graph.mjs '{"model", "output", "weights", "publish", "lock", "stats", "level", "threads", "executionProvider"}'

import { existsSync, linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setPriority } from 'node:os';
import * as ort from 'onnxruntime-node';

const job = JSON.parse(process.argv[2] ?? '{}');
for (const key of ['model', 'output', 'weights', 'publish', 'lock', 'stats']) {
  if (typeof job[key] !== 'string') {
    process.stderr.write(`optimize-graph: "${key}" missing from the job ${process.argv[2]}\n`);
    process.exit(2);
  }
}

// Temporary names carry this process's id ("$PID" in the job), so a later run's cleaning of dead
// processes' files never takes them while this one writes.
for (const key of ['output', 'weights']) job[key] = job[key].replaceAll('$PID', String(process.pid));

process.stdin.resume();
await new Promise((done) => process.stdin.on('end', done).on('close', done).on('error', done));
try {
  setPriority(10); // behind whatever the user starts next
} catch {
  // Not allowed here: keep the inherited priority.
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/** Takes the cache's builder lock, waiting while a live builder holds it. */
async function lock() {
  for (;;) {
    try {
      writeFileSync(job.lock, String(process.pid), { flag: 'wx' });
      return;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
    let holder = 0;
    try {
      holder = Number(readFileSync(job.lock, 'utf8').trim());
    } catch {
      continue; // released meanwhile
    }
    if (holder > 0 && !alive(holder)) rmSync(job.lock, { force: true });
    else await new Promise((r) => setTimeout(r, 200));
  }
}

const weightsPath = join(dirname(job.output), job.weights);
if (!existsSync(job.model)) process.exit(1); // the cache was removed meanwhile
let code = 0;
try {
  await lock();
} catch (e) {
  process.stderr.write(`optimize-graph: ${e instanceof Error ? e.message : e}\n`);
  process.exit(1);
}
try {
  const start = performance.now();
  // Another builder may have published it while this one waited.
  if (!existsSync(job.publish)) {
    const session = await ort.InferenceSession.create(job.model, {
      executionProviders: [job.executionProvider ?? 'cpu'],
      graphOptimizationLevel: job.level ?? 'all',
      enableCpuMemArena: false,
      enableMemPattern: false,
      logSeverityLevel: 3,
      intraOpNumThreads: job.threads ?? 1,
      optimizedModelFilePath: job.output,
      extra: { session: { disable_prepacking: '1', optimized_model_external_initializers_file_name: job.weights } },
    });
    await session.release();
    try {
      linkSync(job.output, job.publish);
      writeFileSync(job.stats, JSON.stringify({ seconds: (performance.now() - start) / 1000, peakRssBytes: process.resourceUsage().maxRSS * 1024 }));
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      rmSync(weightsPath, { force: true });
    }
  }
} catch (e) {
  process.stderr.write(`optimize-graph: ${e instanceof Error ? e.message : e}\n`);
  rmSync(weightsPath, { force: true });
  code = 1;
} finally {
  rmSync(job.output, { force: true });
  rmSync(job.lock, { force: true });
}
process.exit(code);
