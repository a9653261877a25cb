// Experiment: how ONNX Runtime session options and the engine's fused-kernel choices change the
// speed and memory of full-size SD-1.5 components (random weights, bench/random-checkpoint.ts).
// Each variant runs in a child process of its own, so each peak RSS is that variant's alone. The
// session is created here, not through src/engine/session.ts, so options it does not expose can be
// tried; the graph and its hard-linked external weights are laid out exactly as session.ts does.
//
//   npx tsx bench/sd-session-options.ts --component unet|vae --size 256 [--runs 2] [--variants a,b] [--dtype fp32|q8]
//                                       [--batch 2]   (UNet rows: 2 = a guided step, 1 = one without guidance, as LCM's)

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { emitGraph } from '../src/engine/emit.ts';
import { Tensor, type WeightDType, fusedKernels, sym } from '../src/engine/index.ts';
import { loadUNet } from '../src/models/checkpoint/components.ts';
import { loadVae } from '../src/models/checkpoint/components.ts';
import { benchRoot, ensureRandomCheckpoint } from './random-checkpoint.ts';

type SessionOptions = ort.InferenceSession.SessionOptions;

interface Variant {
  /** Session options on top of session.ts's own (CPU, graph optimisation 'all'). */
  options?: SessionOptions;
  /** Emit the plain-ops form of these kernels instead of the fused one. */
  plain?: (keyof typeof fusedKernels)[];
  /**
   * 'save': optimise as usual and also write the optimised graph (weights in a file beside it);
   * 'load': run that saved graph with optimisation off — what a cache of optimised graphs would do.
   */
  optimizedGraph?: 'save' | 'load';
}

const VARIANTS: Record<string, Variant> = {
  default: {},
  arenaOff: { options: { enableCpuMemArena: false } },
  memPatternOff: { options: { enableMemPattern: false } },
  arenaAndPatternOff: { options: { enableCpuMemArena: false, enableMemPattern: false } },
  noPrepacking: { options: { extra: { session: { disable_prepacking: '1' } } } },
  optExtended: { options: { graphOptimizationLevel: 'extended' } },
  optBasic: { options: { graphOptimizationLevel: 'basic' } },
  optDisabled: { options: { graphOptimizationLevel: 'disabled' } },
  // Idle pool threads spin by default; on shared cores the spinning takes time from the working thread.
  noSpinning: { options: { extra: { session: { intra_op: { allow_spinning: '0' } } } } },
  plainAttention: { plain: ['attention'] },
  plainGroupNorm: { plain: ['groupNorm'] },
  memPatternOffPlainGroupNorm: { options: { enableMemPattern: false }, plain: ['groupNorm'] },
  arenaOffPlainGroupNorm: { options: { enableCpuMemArena: false }, plain: ['groupNorm'] },
  saveOptimized: { optimizedGraph: 'save' },
  // ONNX Runtime's own log (stderr) with a timestamp per phase: where the first session's time goes.
  saveOptimizedVerbose: { optimizedGraph: 'save', options: { logSeverityLevel: 0 } },
  verbose: { options: { logSeverityLevel: 0 } },
  // The optimisation alone, as a cache builder that runs nothing would do it: no arena, no prepacked copies.
  saveLean: { optimizedGraph: 'save', options: { enableCpuMemArena: false, extra: { session: { disable_prepacking: '1' } } } },
  loadOptimized: { optimizedGraph: 'load', options: { graphOptimizationLevel: 'disabled' } },
};

const OPTIMIZED = 'optimized.onnx';
const OPTIMIZED_WEIGHTS = 'optimized.weights';

/** RssFile from /proc: resident pages that are mapped files (shared, reclaimable) rather than heap. */
function rssFile(): number {
  const m = /RssFile:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

interface VariantResult {
  variant: string;
  /** Tracing and emitting the graph; writing derived (int8) weights; RSS after both. */
  traceS: number;
  derivedS: number;
  rssAfterDerived: number;
  /** maxRSS once the session exists, before any run. */
  peakAfterSession: number;
  sessionS: number;
  sessionCpuS: number;
  runsS: number[];
  /** CPU seconds (user + system, all threads) per run: steadier than wall time on a shared machine. */
  runsCpuS: number[];
  rssAfterSession: number;
  rssAfterRuns: number;
  /** Bytes of RSS backed by files (memory-mapped weights) rather than anonymous memory, after the runs. */
  rssFileAfterRuns: number;
  rssFileAfterSession: number;
  peakRss: number;
}


/** Traces the component with symbolic sizes and emits it; returns the graph and feeds for one size. */
function traceComponent(component: string, model: string, size: number, dtype: WeightDType, batch: number) {
  const f = size / 8;
  if (component === 'unet') {
    const unet = loadUNet(join(model, 'unet'));
    const b = sym('B');
    const sample = Tensor.input('sample', [b, 4, sym('H'), sym('W')]);
    const timestep = Tensor.input('timestep', [b]);
    const context = Tensor.input('encoder_hidden_states', [b, 77, 768]);
    const graph = emitGraph({ inputs: [sample, timestep, context], outputs: { noise_pred: unet.forward(sample, timestep, context) } }, { weights: dtype });
    const feeds = {
      sample: new ort.Tensor('float32', new Float32Array(batch * 4 * f * f).fill(0.5), [batch, 4, f, f]),
      timestep: new ort.Tensor('float32', new Float32Array(batch).fill(500), [batch]),
      encoder_hidden_states: new ort.Tensor('float32', new Float32Array(batch * 77 * 768).fill(0.1), [batch, 77, 768]),
    };
    return { graph, feeds };
  }
  const vae = loadVae(join(model, 'vae'));
  const latents = Tensor.input('latents', [sym('B'), 4, sym('H'), sym('W')]);
  const graph = emitGraph({ inputs: [latents], outputs: { image: vae.decode(latents) } }, { weights: dtype });
  return { graph, feeds: { latents: new ort.Tensor('float32', new Float32Array(4 * f * f).fill(0.5), [1, 4, f, f]) } };
}

async function runVariant(name: string, component: string, size: number, runs: number, dtype: WeightDType, batch: number): Promise<VariantResult> {
  const variant = VARIANTS[name];
  if (!variant) throw new Error(`unknown variant ${name}; known: ${Object.keys(VARIANTS).join(', ')}`);
  for (const k of variant.plain ?? []) fusedKernels[k] = false;
  const model = ensureRandomCheckpoint();
  const t0trace = performance.now();
  const { graph, feeds } = traceComponent(component, model, size, dtype, batch);
  const traceS = (performance.now() - t0trace) / 1000;
  const hash = createHash('sha256').update(graph.bytes).digest('hex').slice(0, 24);
  const dir = join(benchRoot(), 'graphs-experiments', hash);
  mkdirSync(dir, { recursive: true });
  for (const [link, source] of graph.externalFiles) if (!existsSync(join(dir, link))) linkSync(source, join(dir, link));
  const t0derived = performance.now();
  for (const [name, derived] of graph.derivedFiles) if (!existsSync(join(dir, name))) await derived.write(join(dir, name));
  const derivedS = (performance.now() - t0derived) / 1000;
  const rssAfterDerived = process.memoryUsage.rss();
  const modelPath = join(dir, 'model.onnx');
  writeFileSync(modelPath, graph.bytes);

  const options: SessionOptions = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', logSeverityLevel: 3, ...variant.options };
  if (variant.optimizedGraph === 'save') {
    options.optimizedModelFilePath = join(dir, OPTIMIZED);
    const extra = (variant.options?.extra ?? {}) as { session?: Record<string, string> };
    options.extra = { ...extra, session: { ...extra.session, optimized_model_external_initializers_file_name: OPTIMIZED_WEIGHTS } };
  }
  const path = variant.optimizedGraph === 'load' ? join(dir, OPTIMIZED) : modelPath;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const session = await ort.InferenceSession.create(path, options);
  const sessionS = (performance.now() - t0) / 1000;
  const sessionCpu = process.cpuUsage(cpu0);
  const sessionCpuS = (sessionCpu.user + sessionCpu.system) / 1e6;
  const rssAfterSession = process.memoryUsage.rss();
  const peakAfterSession = process.resourceUsage().maxRSS * 1024;
  const rssFileAfterSession = rssFile();
  const runsS: number[] = [];
  const runsCpuS: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const cpu = process.cpuUsage();
    await session.run(feeds);
    runsS.push((performance.now() - t) / 1000);
    const used = process.cpuUsage(cpu);
    runsCpuS.push((used.user + used.system) / 1e6);
    process.stderr.write(`    ${name}: run ${i} ${runsS[i].toFixed(2)} s (${runsCpuS[i].toFixed(1)} CPU s)\n`);
  }
  return { variant: name, traceS, derivedS, rssAfterDerived, peakAfterSession, sessionS, sessionCpuS, runsS, runsCpuS, rssAfterSession, rssFileAfterSession, rssAfterRuns: process.memoryUsage.rss(), rssFileAfterRuns: rssFile(), peakRss: process.resourceUsage().maxRSS * 1024 };
}

function child(args: string[]): Promise<VariantResult> {
  return new Promise((done, reject) => {
    const p = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('@@result '));
      if (code !== 0 || !line) reject(new Error(`variant ${args.join(' ')} exited with ${code}\n${out}`));
      else done(JSON.parse(line.slice(9)) as VariantResult);
    });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      component: { type: 'string', default: 'unet' },
      size: { type: 'string', default: '256' },
      runs: { type: 'string', default: '2' },
      variants: { type: 'string', default: Object.keys(VARIANTS).join(',') },
      child: { type: 'string' },
      dtype: { type: 'string', default: 'fp32' },
      batch: { type: 'string', default: '2' },
    },
  });
  const size = Number(values.size);
  const runs = Number(values.runs);
  if (values.child) {
    const result = await runVariant(values.child, values.component, size, runs, values.dtype as WeightDType, Number(values.batch));
    process.stdout.write(`@@result ${JSON.stringify(result)}\n`);
    return;
  }
  ensureRandomCheckpoint();
  const gb = (b: number) => (b / 1e9).toFixed(2);
  console.log(`${values.component} at ${size}² (${values.component === 'unet' ? `batch ${values.batch}` : 'batch 1'}), ${runs} runs; ${os.cpus()[0]?.model}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}`);
  console.log('variant              trace s  derived s  session s (CPU)  runs s (first, …)       CPU s per run          RSS after session (file)  after runs (file)  peak RSS (GB)  at session');
  for (const name of values.variants.split(',')) {
    process.stderr.write(`  ${name}…\n`);
    const r = await child(['--child', name, '--component', values.component, '--size', values.size, '--runs', values.runs, '--dtype', values.dtype, '--batch', values.batch]);
    const line = [name.padEnd(20), r.traceS.toFixed(1).padStart(7), r.derivedS.toFixed(1).padStart(9), `${r.sessionS.toFixed(1)} (${r.sessionCpuS.toFixed(1)})`.padStart(11), r.runsS.map((x) => x.toFixed(2)).join(', ').padStart(22), r.runsCpuS.map((x) => x.toFixed(1)).join(', ').padStart(20), `${gb(r.rssAfterSession)} (${gb(r.rssFileAfterSession)})`.padStart(25), `${gb(r.rssAfterRuns)} (${gb(r.rssFileAfterRuns)})`.padStart(18), gb(r.peakRss).padStart(14), gb(r.peakAfterSession).padStart(15)];
    console.log(line.join('  '));
  }
  console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
