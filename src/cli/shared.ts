// Pieces every `nuri` subcommand uses: where the bundled model lives, and a progress bar.

import cliProgress from 'cli-progress';

export { bundledTokenizer, defaultModelPath } from '../models/bundled.ts';

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
