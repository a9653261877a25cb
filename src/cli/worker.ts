// `nuri worker --redis URL`: takes jobs that `nuri serve --redis URL` queued, on this machine or
// any other that reaches the Redis server, and runs them with the same runner as the server.

import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ModelRegistry } from '../server/models.ts';
import { PipelineCache } from '../server/pipeline-cache.ts';
import { DEFAULT_LOCK_DURATION_MS } from '../server/redis-protocol.ts';
import { startRedisWorker } from '../server/redis-worker.ts';
import { createRunner } from '../server/runner.ts';
import { integer } from './options.ts';
import { closeOnSignals } from './shared.ts';

interface WorkerFlags {
  redis: string;
  models: string;
  concurrency: number;
  maxLoaded: number;
  previewVae?: string;
  lockDuration: number;
  id?: string;
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('take jobs from `nuri serve --redis URL` through Redis and run them here')
    .requiredOption('--redis <url>', 'the Redis server the server queues jobs on (redis://host:port)')
    .option('--models <dir>', 'models folder, as the server has it: models, loras/, embeddings/', 'nuri-outputs/models')
    .option('--concurrency <n>', 'jobs run at once (each already uses every core)', integer(1, 64), 1)
    .option('--max-loaded <n>', 'pipelines kept loaded between jobs', integer(1, 64), 1)
    .option('--preview-vae <dir>', 'an AutoencoderTiny folder (TAESD): step previews at the picture\'s size for the models it fits')
    .option('--lock-duration <ms>', 'how long this worker may go silent before its job is handed to another worker', integer(1000), DEFAULT_LOCK_DURATION_MS)
    .option('--id <name>', 'the name this worker shows in job info (default: host:pid)')
    .action(async (flags: WorkerFlags) => {
      await work(flags);
    });
}

async function work(flags: WorkerFlags): Promise<void> {
  const registry = new ModelRegistry(resolve(flags.models));
  const cache = new PipelineCache(registry, flags.maxLoaded, flags.previewVae);
  const worker = await startRedisWorker({
    url: flags.redis,
    runner: createRunner({ registry, cache }),
    id: flags.id,
    concurrency: flags.concurrency,
    lockDurationMs: flags.lockDuration,
    log: (line) => console.error(`nuri worker: ${line}`),
  });
  // A job cut short by a second signal is handed to another worker by BullMQ's stalled check.
  closeOnSignals('nuri worker', 'taking no new jobs, finishing the running one', async () => {
    await worker.close();
    await cache.clear();
  });
}
