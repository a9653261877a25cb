// One picture of `npm run bench:sd -- --picture`: the real `nuri generate` (src/cli/main.ts) run in
// this process with the arguments given, prompt to PNG, while every ONNX Runtime session it creates
// and runs is timed from outside (the CLI is not changed for the bench). At exit it prints one
// `@@result {json}` line: the time in each model's runs, in creating sessions, and the rest.
//
//   npx tsx bench/sd-picture.ts generate --model DIR --prompt "…" --steps 20 … --out picture.png
//
// Run it with NURI_CACHE pointing at an empty folder for a first run (ONNX Runtime's optimised
// graphs are built then), at the same folder again for a warm one.

import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { median, peakRss, printResult } from './sd-report.ts';

/** Which model a session is, from its inputs (the pipeline's graphs name them as diffusers does). */
export type SessionKind = 'text encoder' | 'UNet' | 'VAE decoder' | 'VAE encoder' | 'other';

export function sessionKind(inputNames: readonly string[]): SessionKind {
  if (inputNames.includes('sample')) return 'UNet';
  if (inputNames.includes('input_ids')) return 'text encoder';
  if (inputNames.includes('latents')) return 'VAE decoder';
  if (inputNames.includes('images')) return 'VAE encoder';
  return 'other';
}

/** A session created or run: milliseconds since the process started. */
export interface Span {
  kind: SessionKind;
  start: number;
  end: number;
}

export interface PictureTimes {
  /** Process start to exit, seconds. */
  totalS: number;
  /** Each model's session runs, summed (seconds); the UNet's steps one by one. */
  runS: Record<string, number>;
  unetStepsS: number[];
  unetStepS: number;
  /** Creating sessions (reading weights, ONNX Runtime's optimisation or its cached result), by model. */
  sessionS: Record<string, number>;
  /** After the last model run: the PNG encoded and written, and the process's exit. */
  afterLastRunS: number;
  /**
   * Everything that is not a model running nor the PNG: module loading, configs, tracing and
   * emitting graphs, creating and freeing sessions — the cost of loading the model.
   */
  loadS: number;
}

/** Splits a run's time into model runs, session creation and the rest. */
export function pictureTimes(creates: readonly Span[], runs: readonly Span[], exitAt: number): PictureTimes {
  const sum = (spans: readonly Span[]) => {
    const out: Record<string, number> = {};
    for (const span of spans) out[span.kind] = (out[span.kind] ?? 0) + (span.end - span.start) / 1000;
    return out;
  };
  const runS = sum(runs);
  const unetStepsS = runs.filter((r) => r.kind === 'UNet').map((r) => (r.end - r.start) / 1000);
  const lastRun = Math.max(0, ...runs.map((r) => r.end));
  const afterLastRunS = (exitAt - lastRun) / 1000;
  const running = Object.values(runS).reduce((a, b) => a + b, 0);
  return {
    totalS: exitAt / 1000,
    runS,
    unetStepsS,
    unetStepS: unetStepsS.length ? median(unetStepsS) : 0,
    sessionS: sum(creates),
    afterLastRunS,
    loadS: exitAt / 1000 - running - afterLastRunS,
  };
}

export interface PictureResult extends PictureTimes {
  cpuS: number;
  peakRssBytes: number;
}

/** Wraps session creation so that each new session and each of its runs is recorded. */
function recordSessions(creates: Span[], runs: Span[]): void {
  type Create = (...args: unknown[]) => Promise<ort.InferenceSession>;
  const create = ort.InferenceSession.create.bind(ort.InferenceSession) as Create;
  (ort.InferenceSession as { create: unknown }).create = async (...args: unknown[]) => {
    const start = performance.now();
    const session = await create(...args);
    const kind = sessionKind(session.inputNames);
    creates.push({ kind, start, end: performance.now() });
    const run = session.run.bind(session) as (...a: unknown[]) => Promise<ort.InferenceSession.ReturnType>;
    (session as { run: unknown }).run = async (...a: unknown[]) => {
      const begun = performance.now();
      const out = await run(...a);
      runs.push({ kind, start: begun, end: performance.now() });
      return out;
    };
    return session;
  };
}

async function main(): Promise<void> {
  const creates: Span[] = [];
  const runs: Span[] = [];
  recordSessions(creates, runs);
  process.on('exit', (code) => {
    if (code !== 0) return;
    const cpu = process.cpuUsage();
    const result: PictureResult = { ...pictureTimes(creates, runs, performance.now()), cpuS: (cpu.user + cpu.system) / 1e6, peakRssBytes: peakRss() };
    printResult(result);
  });
  process.argv = [process.argv[0], 'nuri', ...process.argv.slice(2)];
  await import('../src/cli/main.ts');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
