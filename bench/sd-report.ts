// What `npm run bench:sd` and its row groups share: running a measuring child process, timing with
// CPU time beside wall time, and printing rates against the machine's measured peak.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Peak } from './peak.ts';
import { sampleTree } from './tree-rss.ts';

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The value, wall seconds, and CPU seconds of all threads (steadier than wall time when the cores are shared). */
export async function seconds<T>(f: () => Promise<T> | T): Promise<[T, number, number]> {
  const t0 = performance.now();
  const cpu = process.cpuUsage();
  const value = await f();
  const used = process.cpuUsage(cpu);
  return [value, (performance.now() - t0) / 1000, (used.user + used.system) / 1e6];
}

/** This process's peak resident memory in bytes. */
export function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024; // reported in KiB
}

/** The line a measuring child prints for its parent. */
export function printResult(result: unknown): void {
  process.stdout.write(`@@result ${JSON.stringify(result)}\n`);
}

/**
 * Runs a measuring script in a fresh Node process (with tsx's loader, as this one has), so that its
 * peak RSS is its own; resolves to the `@@result` it printed, the wall seconds from spawn to exit,
 * and the largest resident memory of the child and every process under it at once (sampled: a
 * child process of its own counts too).
 */
export function runChild<T>(script: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ result: T; wallS: number; treePeakBytes: number; processes: number }> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [...process.execArgv, script, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env });
    const sampler = sampleTree(child.pid!);
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const wallS = (performance.now() - t0) / 1000;
      const { peakBytes, processes } = sampler.stop();
      const line = out.split('\n').find((l) => l.startsWith('@@result '));
      if (code !== 0 || !line) reject(new Error(`bench child ${script} ${args.join(' ')} exited with ${code}\n${out}`));
      else resolvePromise({ result: JSON.parse(line.slice('@@result '.length)) as T, wallS, treePeakBytes: peakBytes, processes });
    });
  });
}

/**
 * Waits until every graph in a graph cache has its optimised form (written by the child a first run
 * leaves when it exits, one graph at a time) and sums what their stats files say.
 */
export async function optimisedGraphsBuilt(cache: string, timeoutS = 3600): Promise<{ graphs: number; seconds: number; peakRssBytes: number }> {
  const root = join(cache, 'graphs');
  const folders = existsSync(root) ? readdirSync(root).map((d) => join(root, d)).filter((d) => existsSync(join(d, 'model.onnx'))) : [];
  const stats = (d: string) => readdirSync(d).find((f) => f.startsWith('optimized-') && f.endsWith('.build.json'));
  for (let waited = 0; folders.some((d) => !stats(d)); waited += 1) {
    if (waited > timeoutS) throw new Error(`optimised graphs not written within ${timeoutS} s in ${cache}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  const read = folders.map((d) => JSON.parse(readFileSync(join(d, stats(d)!), 'utf8')) as { seconds: number; peakRssBytes: number });
  return { graphs: read.length, seconds: read.reduce((a, r) => a + r.seconds, 0), peakRssBytes: Math.max(0, ...read.map((r) => r.peakRssBytes)) };
}

export const s = (x: number | undefined) => (x === undefined ? '—' : x < 10 ? `${x.toFixed(2)} s` : `${x.toFixed(1)} s`);
export const gb = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;
export const pct = (x: number) => `${(100 * x).toFixed(0)}%`;

/** Columns padded to their widest cell, the first left-aligned. */
export function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd()).join('\n');
}

/** The peak a stage is held to: the better of the measurements before and after the stages. */
export interface PeakBound {
  wall: number;
  perCpuSecond: number;
  threads: number;
}

export function peakBound(peaks: Peak[], threads: number): PeakBound {
  const at = (p: Peak, t: number) => p.fp32[t] ?? p.fp32[Math.max(...Object.keys(p.fp32).map(Number))];
  const cpuAt = (p: Peak, t: number) => p.fp32PerCpuSecond[t] ?? p.fp32PerCpuSecond[Math.max(...Object.keys(p.fp32PerCpuSecond).map(Number))];
  return { wall: Math.max(...peaks.map((p) => at(p, threads))), perCpuSecond: Math.max(...peaks.map((p) => cpuAt(p, threads))), threads };
}

export interface RateRow {
  dtype: string;
  stage: string;
  /** The picture's side in pixels. */
  size: number;
  flops: number;
  wallS: number;
  cpuS: number;
  /** Whether the fp32 peak bounds the stage (not int8 products: VNNI does 4 int8 multiply–adds per fp32 lane). */
  bounded?: boolean;
}

/** One line per stage: FLOPs, time, rates and fractions of the peak; errors for any figure above it. */
export function rateTable(rows: RateRow[], bound: PeakBound, errors: string[]): string {
  const out = [['stage', 'size', 'dtype', 'GFLOP', 'median', 'CPU', 'GFLOP/s', 'of peak', 'GFLOP/CPU-s', 'of peak']];
  for (const r of rows) {
    const wallRate = r.flops / r.wallS / 1e9;
    const cpuRate = r.flops / r.cpuS / 1e9;
    const bounded = r.bounded ?? r.dtype === 'fp32';
    for (const [rate, peak, what] of [[wallRate, bound.wall, 'GFLOP/s'], [cpuRate, bound.perCpuSecond, 'GFLOP per CPU-second']] as const) {
      if (bounded && rate > peak) errors.push(`ERROR: ${r.stage} at ${r.size}² (${r.dtype}): ${rate.toFixed(1)} ${what} is above the measured peak ${peak.toFixed(1)}: a measurement error, not a result`);
    }
    // An int8 stage's rate is in fp32-equivalent FLOPs: a fraction of the fp32 peak would mislead.
    const of = (rate: number, peak: number) => (bounded ? pct(rate / peak) : 'int8');
    out.push([r.stage, `${r.size}²`, r.dtype, (r.flops / 1e9).toFixed(1), s(r.wallS), s(r.cpuS), wallRate.toFixed(1), of(wallRate, bound.wall), cpuRate.toFixed(1), of(cpuRate, bound.perCpuSecond)]);
  }
  const note = rows.some((r) => !(r.bounded ?? r.dtype === 'fp32')) ? ['', 'int8: the stage\'s products are int8 (VNNI: 4 multiply–adds per fp32 lane), its GFLOP/s counts them as fp32 would be; no fp32 peak bounds it.'] : [];
  return [table(out), ...note].join('\n');
}
