// A worker process for the Redis tests: the same startRedisWorker that `nuri worker` runs, with
// the sleepy runner. Usage: tsx sleepy-worker.ts REDIS_URL WORKER_ID STARTS_DIR LOCK_MS PREFIX
// Prints "ready" once it waits for jobs.

import { startRedisWorker } from '../../src/server/redis-worker.ts';
import { sleepyRunner } from './sleepy-runner.ts';

const [url, id, startsDir, lockMs, prefix] = process.argv.slice(2);
const worker = await startRedisWorker({ url, id, prefix, runner: sleepyRunner({ startsDir, workerId: id }), lockDurationMs: Number(lockMs) });
process.stdout.write('ready\n');
process.once('SIGTERM', () => void worker.close().then(() => process.exit(0)));
