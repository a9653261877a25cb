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

/**
 * For long-running commands (serve, worker): the first SIGINT or SIGTERM says what happens now and
 * runs `close`, exiting 0 once it is done; a second quits at once.
 */
export function closeOnSignals(command: string, closing: string, close: () => Promise<unknown>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      console.error(`${command}: stopping now`);
      process.exit(1);
    }
    stopping = true;
    console.error(`${command}: ${signal}: ${closing} (${signal} again to quit at once)`);
    close().then(
      () => process.exit(0),
      (error: Error) => {
        console.error(`${command}: ${error.message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}
