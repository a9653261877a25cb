// `npm run bench:sd`: full-size Stable Diffusion 1.5 on this machine's CPU, with random weights (the
// speed and memory of a network do not depend on its values). Each resolution runs in a child
// process (bench/sd-measure.ts) so that each peak RSS is clean. Compared with peers measured on the
// same 2-core machine: diffusers on PyTorch CPU and stable-diffusion.cpp.
//
//   npm run bench:sd [-- --fp16] [--sizes 512,256] [--steps 3] [--decodes 1]
//                       [--session-options JSON] [--plain groupNorm] [--release]   (experiments; see sd-measure.ts)

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureRandomCheckpoint } from './random-checkpoint.ts';
import type { StageResult } from './sd-measure.ts';

/** Peers on the same 2-core machine (seconds, bytes); undefined where not measured. */
const PEERS = {
  diffusers: { name: 'diffusers (PyTorch CPU)', unetStep: { 512: 27.1, 256: 6.8 } as Record<number, number>, vaeDecode: { 512: 25.3 } as Record<number, number> },
  sdcpp: { name: 'stable-diffusion.cpp', unetStep: { 512: 32.9 } as Record<number, number>, peakRss: 3.7e9 },
};
const RSS_TARGET = 4.5e9;

const here = dirname(fileURLToPath(import.meta.url));

function ortVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('onnxruntime-node/package.json') as { version: string }).version;
}

function loadAverage(): string {
  return os.loadavg().map((l) => l.toFixed(2)).join(', ');
}

/** Runs one resolution in a fresh Node process (with tsx's loader, as this one has). */
function runChild(args: string[]): Promise<StageResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, join(here, 'sd-measure.ts'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('@@result '));
      if (code !== 0 || !line) reject(new Error(`bench child ${args.join(' ')} exited with ${code}\n${out}`));
      else resolvePromise(JSON.parse(line.slice('@@result '.length)) as StageResult);
    });
  });
}

const s = (x: number | undefined) => (x === undefined ? '—' : x < 10 ? `${x.toFixed(2)} s` : `${x.toFixed(1)} s`);
const gb = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;
/** How many times faster than the peer (> 1: we win). */
const ratio = (peer: number | undefined, ours: number | undefined) => (peer === undefined || ours === undefined ? '' : `${(peer / ours).toFixed(2)}×`);

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd()).join('\n');
}

function report(results: StageResult[], weights: string, load: { before: string; after: string }): string {
  const cpus = os.cpus();
  const lines = [
    `machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${gb(os.totalmem())} RAM; Node ${process.version}, onnxruntime-node ${ortVersion()}`,
    `weights: ${weights}; load average (1, 5, 15 min) before: ${load.before}, after: ${load.after}`,
    '',
  ];
  const head = ['stage', ...results.map((r) => `${r.size}×${r.size}`), 'vs diffusers', 'vs sd.cpp'];
  const rows: string[][] = [head];
  const byStage = (label: string, pick: (r: StageResult) => number, peers: { d?: Record<number, number>; c?: Record<number, number> } = {}) => {
    const cells = results.map((r) => s(pick(r)));
    const vs = (p?: Record<number, number>) => results.map((r) => ratio(p?.[r.size], pick(r))).filter(Boolean).join(' / ');
    rows.push([label, ...cells, vs(peers.d), vs(peers.c)]);
  };
  byStage('model load (configs, headers)', (r) => r.loadS);
  byStage('session: text encoder', (r) => r.textSessionS);
  byStage('session: UNet', (r) => r.unetSessionS);
  byStage('session: VAE decoder', (r) => r.vaeSessionS);
  byStage('ready to run (load + sessions)', (r) => r.loadS + r.textSessionS + r.unetSessionS + r.vaeSessionS);
  byStage('text encoder, 2 prompts', (r) => r.textEncodeS);
  byStage('  of which session run', (r) => r.textRunS);
  byStage('UNet first step (cold)', (r) => r.unetFirstStepS);
  byStage('UNet step, batch 2 (median)', (r) => r.unetStepS, { d: PEERS.diffusers.unetStep, c: PEERS.sdcpp.unetStep });
  byStage('  CPU time ÷ 2 threads', (r) => r.unetStepCpuS / 2, { d: PEERS.diffusers.unetStep, c: PEERS.sdcpp.unetStep });
  byStage('VAE decode, 1 image (cold)', (r) => r.vaeFirstDecodeS);
  byStage('VAE decode, 1 image', (r) => r.vaeDecodeS, { d: PEERS.diffusers.vaeDecode });
  byStage('  CPU time ÷ 2 threads', (r) => r.vaeDecodeCpuS / 2, { d: PEERS.diffusers.vaeDecode });
  rows.push([
    'peak RSS (maxRSS)',
    ...results.map((r) => gb(r.peakRssBytes)),
    '',
    results.map((r) => ratio(PEERS.sdcpp.peakRss, r.peakRssBytes)).join(' / '),
  ]);
  lines.push(table(rows), '');
  lines.push('ratios: peer time ÷ ours (> 1× means Nuri is faster / smaller); peers measured on this same 2-core machine:');
  lines.push('  diffusers on PyTorch CPU: UNet step 27.1 s at 512² (6.8 s at 256²), VAE decode 25.3 s at 512²;');
  lines.push('  stable-diffusion.cpp: UNet step 32.9 s at 512², peak RSS 3.7 GB.');
  lines.push('CPU time ÷ 2 threads: what the stage takes on 2 idle cores. When other processes share the cores, wall time');
  lines.push('  grows but CPU time barely does (ORT threads spin while waiting, so it errs high): read it beside a high load average.');
  for (const r of results) {
    const phases = Object.entries(r.rss).map(([k, v]) => `${k} ${gb(v)}`).join(', ');
    lines.push(`RSS by phase at ${r.size}²: ${phases}`);
    lines.push(`UNet steps at ${r.size}²: ${r.unetStepsS.map((x) => x.toFixed(2)).join(', ')} s`);
  }
  // Wall time is what a user waits; CPU time ÷ 2 is the same work on 2 idle cores. Say both.
  const verdicts: string[] = [];
  const versus = (what: string, wall: number, cpu: number, peer: number) =>
    `${what}: wall ${s(wall)} ${wall < peer ? 'faster' : 'SLOWER'}, CPU ÷ 2 ${s(cpu / 2)} ${cpu / 2 < peer ? 'faster' : 'SLOWER'} than ${s(peer)}`;
  for (const r of results) {
    const peerStep = Math.min(PEERS.diffusers.unetStep[r.size] ?? Infinity, PEERS.sdcpp.unetStep[r.size] ?? Infinity);
    if (Number.isFinite(peerStep)) verdicts.push(versus(`UNet step at ${r.size}² vs the best peer`, r.unetStepS, r.unetStepCpuS, peerStep));
    const peerVae = PEERS.diffusers.vaeDecode[r.size];
    if (peerVae !== undefined) verdicts.push(versus(`VAE decode at ${r.size}² vs diffusers`, r.vaeDecodeS, r.vaeDecodeCpuS, peerVae));
    verdicts.push(`peak RSS at ${r.size}²: ${gb(r.peakRssBytes)} ${r.peakRssBytes <= RSS_TARGET ? 'within' : 'OVER'} the ${gb(RSS_TARGET)} target`);
  }
  lines.push('', ...verdicts);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      fp16: { type: 'boolean', default: false },
      sizes: { type: 'string', default: '512,256' },
      steps: { type: 'string', default: '3' },
      decodes: { type: 'string', default: '1' },
      'session-options': { type: 'string' },
      plain: { type: 'string' },
      release: { type: 'boolean', default: false },
    },
  });
  const experiment: string[] = [];
  if (values['session-options']) experiment.push('--session-options', values['session-options']);
  if (values.plain) experiment.push('--plain', values.plain);
  if (values.release) experiment.push('--release');
  const model = ensureRandomCheckpoint({ fp16: values.fp16 });
  const before = loadAverage();
  const results: StageResult[] = [];
  for (const size of values.sizes.split(',').map(Number)) {
    process.stderr.write(`measuring ${size}×${size} in a child process…\n`);
    results.push(await runChild(['--model', model, '--size', String(size), '--steps', values.steps, '--decodes', values.decodes, ...experiment]));
  }
  const config = experiment.length ? `; experiment: ${experiment.join(' ')}` : '; engine defaults';
  console.log(report(results, `${values.fp16 ? 'fp16' : 'fp32'} random SD-1.5 (${model})${config}`, { before, after: loadAverage() }));
}

await main();
