// `nuri serve`: the HTTP API (jobs, queue, progress events, results) on this machine.

import type { Command } from 'commander';
import { DEFAULT_QUEUE_SIZE } from '../server/local-queue.ts';
import { DEFAULT_LIMITS, type ServerLimits } from '../server/schemas.ts';
import { startServer } from '../server/server.ts';
import { integer } from './options.ts';
import { closeOnSignals } from './shared.ts';

interface ServeFlags extends ServerLimits {
  host: string;
  port: number;
  models?: string;
  outputs: string;
  queueSize: number;
  maxLoaded: number;
  previewVae?: string;
  redis?: string;
  token?: string;
  log?: boolean;
}

export function registerServe(program: Command): void {
  const d = DEFAULT_LIMITS;
  program
    .command('serve')
    .description('serve the HTTP API: jobs (generate, edit, attention, train) with a queue, progress events and PNG results')
    .option('--host <address>', 'address to bind; anything but loopback needs --token', '127.0.0.1')
    .option('--port <n>', 'port', integer(0, 65535), 7860)
    .option('--models <dir>', 'models folder: diffusers folders and .safetensors files, loras/, embeddings/ (default: OUTPUTS/models)')
    .option('--outputs <dir>', 'where job records, result images and uploads are kept', 'nuri-outputs')
    .option('--queue-size <n>', 'jobs that may wait; more are refused with 429', integer(1, 100_000), DEFAULT_QUEUE_SIZE)
    .option('--max-loaded <n>', 'pipelines kept loaded between jobs', integer(1, 64), 1)
    .option('--preview-vae <dir>', 'an AutoencoderTiny folder (TAESD): step previews at the picture\'s size for the models it fits')
    .option('--redis <url>', 'run jobs through Redis (BullMQ), taken by `nuri worker` processes')
    .option('--token <token>', 'API token every request but GET /health must carry (default: $NURI_TOKEN)')
    .option('--max-pixels <n>', 'largest width × height', integer(64), d.maxPixels)
    .option('--max-steps <n>', 'most sampling steps', integer(1), d.maxSteps)
    .option('--max-batch <n>', 'most images per job', integer(1), d.maxBatch)
    .option('--max-prompt-length <n>', 'longest prompt, in characters', integer(1), d.maxPromptLength)
    .option('--max-upload-bytes <n>', 'largest upload', integer(1), d.maxUploadBytes)
    .option('--max-train-steps <n>', 'most training steps', integer(1), d.maxTrainSteps)
    .option('--max-train-images <n>', 'most images in a training set', integer(1), d.maxTrainImages)
    .option('--log', 'log every request (JSON lines on stdout)')
    .action(async (flags: ServeFlags) => {
      await serve(flags);
    });
}

async function serve(flags: ServeFlags): Promise<void> {
  const token = flags.token ?? (process.env.NURI_TOKEN || undefined);
  const { maxPixels, maxSteps, maxBatch, maxPromptLength, maxUploadBytes, maxTrainSteps, maxTrainImages } = flags;
  const server = await startServer({
    host: flags.host,
    port: flags.port,
    models: flags.models,
    outputs: flags.outputs,
    queueSize: flags.queueSize,
    maxLoaded: flags.maxLoaded,
    previewVae: flags.previewVae,
    redis: flags.redis,
    token,
    limits: { maxPixels, maxSteps, maxBatch, maxPromptLength, maxUploadBytes, maxTrainSteps, maxTrainImages },
    logger: flags.log,
  });
  console.log(`nuri serve: listening on ${server.url} (Studio ${server.url}/, API ${server.url}/api/v1, models from ${server.modelsDir})`);
  // Closing the app stops accepting, closes event streams, cancels the running job between two
  // steps (queued jobs stay on disk for the next start) and frees the loaded pipelines. With
  // --redis the jobs go on in the workers and are collected at the next start.
  const closing = flags.redis ? 'no new requests; the workers go on with their jobs' : 'no new requests; cancelling the running job';
  closeOnSignals('nuri serve', closing, () => server.app.close());
}
