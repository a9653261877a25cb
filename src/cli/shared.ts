// Pieces every `nuri` subcommand uses: where the bundled model lives, and a progress bar.

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const bundledModel = join(repoRoot, 'models', 'default');

/** The bundled model's tokenizer: the CLIP vocabulary single-file checkpoints lack. */
export const bundledTokenizer = join(bundledModel, 'tokenizer');

/** The small model that ships in the repository, used when no --model is given. */
export function defaultModelPath(): string {
  const path = bundledModel;
  if (!existsSync(join(path, 'model_index.json'))) {
    throw new Error(`no --model given and the bundled default model is missing (${path}); pass --model PATH`);
  }
  return path;
}

export interface Progress {
  update(value: number, payload?: Record<string, string | number>): void;
  stop(): void;
}

/** A progress bar on stderr when it is a terminal; silent otherwise (logs, CI, pipes). */
export function progressBar(label: string, total: number, extra = ''): Progress {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { format: `${label} |{bar}| {value}/{total} {duration_formatted} elapsed, ETA {eta_formatted}${extra}`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return { update: (v, payload) => bar.update(v, payload), stop: () => bar.stop() };
}
