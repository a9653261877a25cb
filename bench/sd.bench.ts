// `npm run bench:sd`: full-size Stable Diffusion 1.5 on this machine's CPU, with random weights (the
// speed and memory of a network do not depend on its values). Each resolution runs in a child
// process (bench/sd-measure.ts) so that each peak RSS is clean. The machine's own fp32 peak is
// measured in the same run (bench/peak.ts), before and after the stages, and every stage's FLOPs are
// counted from its traced graph (bench/sd-flops.ts): each figure comes with the fraction of the peak
// it reached, and a figure above the peak is reported as an error (exit code 1), not as a result.
//
//   npm run bench:sd [-- --sizes 512,256] [--dtype fp32,q8] [--steps 3] [--decodes 1] [--fp16]
//                       [--first-run] [--first-run-only] [--model DIR]   (first run: an empty graph cache against a warm one)
//                       [--session-options JSON] [--plain groupNorm] [--release]   (experiments; see sd-measure.ts)
//                       [--sdxl 1024,512] [--taesd 512] [--picture ddim,lcm [--picture-runs cold,warm] [--picture-size 512]]
//
// The optional rows (bench/sd-rows.ts), each in child processes of its own, every dtype of --dtype:
//   --sdxl SIZES     SDXL base's UNet step with guidance (random weights, 10.3 GB in fp32, written once
//                    to .cache/bench/sdxl-random; --sdxl-unet DIR another), --steps timed steps after a warm-up
//   --taesd SIZE     TAESD's decode against SD-1.5's VAE decode (bench/taesd.bench.ts)
//   --picture KINDS  a picture prompt → PNG by `nuri generate` on the random SD-1.5: ddim (20 steps,
//                    guidance 7.5, the VAE), lcm (4 steps, guidance 1, TAESD), on an empty graph cache
//                    (cold) and on the one it left (warm); load time reported apart from the model runs
//   --sizes none     leaves out the SD-1.5 stage rows (e.g. to measure only the rows above)

import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { WEIGHT_DTYPES, type WeightDType, defaultThreads } from '../src/engine/index.ts';
import { readF32, relativeError } from './compare.ts';
import { type Peak, measurePeak } from './peak.ts';
import { benchRoot, ensureRandomCheckpoint, ensureRandomSdxlUNet, ensureRandomTaesd } from './random-checkpoint.ts';
import { type StageFlops, stageFlops } from './sd-flops.ts';
import type { StageResult } from './sd-measure.ts';
import { type RateRow, gb, optimisedGraphsBuilt, peakBound, rateTable, runChild as runMeasuringChild, s, table } from './sd-report.ts';
import { type CacheState, PICTURES, type PictureKind, type Rows, pictureRows, sdxlRows, taesdRows } from './sd-rows.ts';

/** Figures from other runs, printed as such: nothing in this run checks them. */
const MEASURED_ELSEWHERE = [
  'diffusers 0.x on PyTorch CPU, same model and machine type: 22.2–22.6 s per 512² UNet step with guidance (issue 15, not this run)',
];
const RSS_TARGET = 4.5e9;

/** A child's figures, with the relative errors against the fp32 child of the same size. */
type Measured = StageResult & { unetRelativeError?: number; textRelativeError?: number };

const here = dirname(fileURLToPath(import.meta.url));

function ortVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('onnxruntime-node/package.json') as { version: string }).version;
}

function loadAverage(): string {
  return os.loadavg().map((l) => l.toFixed(2)).join(', ');
}

/** One SD resolution in a fresh Node process (bench/sd-measure.ts). */
async function runChild(args: string[]): Promise<StageResult> {
  return (await runMeasuringChild<StageResult>(join(here, 'sd-measure.ts'), args)).result;
}

/** runChild, with the peak RSS of the child and every process it started (sd-report.ts). */
async function runChildSampled(args: string[]): Promise<{ result: StageResult; treePeakBytes: number; processes: number }> {
  const { result, treePeakBytes, processes } = await runMeasuringChild<StageResult>(join(here, 'sd-measure.ts'), args);
  return { result, treePeakBytes: Math.max(treePeakBytes, result.peakRssBytes), processes };
}

function report(results: Measured[], flops: Map<number, StageFlops>, peaks: Peak[], weights: string, load: { before: string; after: string }, extra: Rows): { text: string; errors: string[] } {
  const cpus = os.cpus();
  const threads = defaultThreads();
  const bound = peakBound(peaks, threads);
  const peakLine = (p: Peak, when: string) =>
    `  ${when}: ${Object.entries(p.fp32).map(([t, g]) => `${t} thread${t === '1' ? '' : 's'} ${g.toFixed(1)} GFLOP/s (${p.kernel[Number(t)]})`).join(', ')}; ` +
    `per CPU-second ${Object.entries(p.fp32PerCpuSecond).map(([t, g]) => `${t}: ${g.toFixed(1)}`).join(', ')}`;
  const lines = [
    `machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${gb(os.totalmem())} RAM; Node ${process.version}, onnxruntime-node ${ortVersion()}; stages run ${threads} intra-op threads`,
    `weights: ${weights}`,
    `load average (1, 5, 15 min) before: ${load.before}, after: ${load.after}`,
    `peak: fp32 on ONNX Runtime, the better of a 2048³ MatMul and a 3×3 conv (bench/peak.ts), best of ${peaks[0].runs} runs each:`,
    peakLine(peaks[0], 'before the stages'),
    ...(peaks[1] ? [peakLine(peaks[1], 'after the stages ')] : []),
    `  stages are held to the better of the two at ${threads} threads: ${bound.wall.toFixed(1)} GFLOP/s wall, ${bound.perCpuSecond.toFixed(1)} GFLOP per CPU-second`,
    'FLOPs: counted from each traced graph at the stage\'s sizes, 2 per multiply–add of every MatMul, Gemm, Conv,',
    '  ConvTranspose and attention product (norms, softmax and elementwise ops not counted; bench/sd-flops.ts).',
    'median: wall time, median of the timed runs; CPU: the same runs\' CPU time (all threads), which other processes',
    '  on the cores barely change (ORT\'s threads spin while waiting, so it errs high): read both beside the load.',
    '',
  ];
  const rateRows: RateRow[] = [];
  for (const r of results) {
    const f = flops.get(r.size)!;
    rateRows.push({ dtype: r.dtype, stage: 'text encoder, 2 prompts', size: r.size, flops: f.textEncoder, wallS: r.textRunS, cpuS: r.textRunCpuS });
    rateRows.push({ dtype: r.dtype, stage: 'UNet step, batch 2', size: r.size, flops: f.unetStep, wallS: r.unetStepS, cpuS: r.unetStepCpuS });
    rateRows.push({ dtype: r.dtype, stage: 'VAE decode, 1 image', size: r.size, flops: f.vaeDecode, wallS: r.vaeDecodeS, cpuS: r.vaeDecodeCpuS, bounded: true });
  }
  rateRows.push(...extra.rates);
  const errors: string[] = [];
  lines.push(rateTable(rateRows, bound, errors), '', ...(extra.lines.length ? [...extra.lines, ''] : []));
  if (results.length) lines.push(otherFigures(results));
  lines.push('', 'measured elsewhere (not checked by this run):', ...MEASURED_ELSEWHERE.map((l) => `  ${l}`));
  if (errors.length) lines.push('', ...errors);
  return { text: lines.join('\n'), errors };
}

/** The SD-1.5 rows' loading times, cold runs, memory and q8 comparisons. */
function otherFigures(results: Measured[]): string {
  const lines: string[] = [];
  const rows: string[][] = [['other figures', ...results.map((r) => `${r.size}² ${r.dtype}`)]];
  const byStage = (label: string, pick: (r: StageResult) => number) => rows.push([label, ...results.map((r) => s(pick(r)))]);
  byStage('model load (configs, headers)', (r) => r.loadS);
  byStage('session: text encoder', (r) => r.textSessionS);
  byStage('session: UNet', (r) => r.unetSessionS);
  byStage('session: VAE decoder', (r) => r.vaeSessionS);
  byStage('ready to run (load + sessions)', (r) => r.loadS + r.textSessionS + r.unetSessionS + r.vaeSessionS);
  byStage('encodePrompts, 2 prompts (tokenize + run)', (r) => r.textEncodeS);
  byStage('UNet first step (cold)', (r) => r.unetFirstStepS);
  byStage('VAE decode, 1 image (cold)', (r) => r.vaeFirstDecodeS);
  rows.push(['peak RSS (maxRSS)', ...results.map((r) => gb(r.peakRssBytes))]);
  lines.push(table(rows), '');
  for (const r of results) {
    const fp32 = results.find((o) => o.size === r.size && o.dtype === 'fp32');
    if (r.dtype === 'q8' && fp32) {
      lines.push(`q8 vs fp32 at ${r.size}²: UNet step ${(fp32.unetStepS / r.unetStepS).toFixed(2)}× faster (wall), ${(fp32.unetStepCpuS / r.unetStepCpuS).toFixed(2)}× (CPU); ` +
        `text encoder ${(fp32.textRunS / r.textRunS).toFixed(2)}× (wall), ${(fp32.textRunCpuS / r.textRunCpuS).toFixed(2)}× (CPU); peak RSS ${gb(fp32.peakRssBytes)} → ${gb(r.peakRssBytes)}`);
      if (r.unetRelativeError !== undefined) lines.push(`  relative error (L2) of q8 vs fp32: one UNet noise prediction ${r.unetRelativeError.toExponential(2)}, text encoder states ${r.textRelativeError?.toExponential(2)}`);
    }
  }
  for (const r of results) {
    const phases = Object.entries(r.rss).map(([k, v]) => `${k} ${gb(v)}`).join(', ');
    lines.push(`RSS by phase at ${r.size}²: ${phases}`);
    lines.push(`UNet steps at ${r.size}²: ${r.unetStepsS.map((x) => x.toFixed(2)).join(', ')} s`);
    lines.push(`peak RSS at ${r.size}²: ${gb(r.peakRssBytes)} ${r.peakRssBytes <= RSS_TARGET ? 'within' : 'OVER'} the ${gb(RSS_TARGET)} target`);
  }
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
      dtype: { type: 'string', default: 'fp32' },
      'first-run': { type: 'boolean', default: false },
      'first-run-only': { type: 'boolean', default: false },
      model: { type: 'string' },
      sdxl: { type: 'string' },
      'sdxl-unet': { type: 'string' },
      taesd: { type: 'string' },
      picture: { type: 'string' },
      'picture-runs': { type: 'string', default: 'cold,warm' },
      'picture-size': { type: 'string', default: '512' },
    },
  });
  const dtypes = values.dtype.split(',') as WeightDType[];
  for (const d of dtypes) if (!WEIGHT_DTYPES.includes(d as WeightDType)) throw new Error(`--dtype: expected ${WEIGHT_DTYPES.join(', ')} (comma-separated), got ${d}`);
  const experiment: string[] = [];
  if (values['session-options']) experiment.push('--session-options', values['session-options']);
  if (values.plain) experiment.push('--plain', values.plain);
  if (values.release) experiment.push('--release');
  const sizes = values.sizes === 'none' ? [] : values.sizes.split(',').map(Number);
  const pictureKinds = (values.picture?.split(',') ?? []) as PictureKind[];
  // The SD-1.5 checkpoint (4 GB, written once) only where a row runs it: not for SDXL alone.
  const usesSd15 = sizes.length > 0 || pictureKinds.length > 0 || values.taesd !== undefined;
  const model = values.model ?? (usesSd15 ? ensureRandomCheckpoint({ fp16: values.fp16 }) : '');
  for (const k of pictureKinds) if (!(k in PICTURES)) throw new Error(`--picture: expected ${Object.keys(PICTURES).join(', ')} (comma-separated), got ${k}`);
  const pictureRuns = values['picture-runs'].split(',') as CacheState[];
  for (const r of pictureRuns) if (r !== 'cold' && r !== 'warm') throw new Error(`--picture-runs: expected cold, warm (comma-separated), got ${r}`);
  if (values['first-run-only']) {
    const before = loadAverage();
    const rows: string[] = [];
    for (const size of sizes) for (const dtype of dtypes) rows.push(await firstRunRow(model, size, dtype, experiment));
    console.log([`machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores; onnxruntime-node ${ortVersion()}; ${model}`, `load average (1, 5, 15 min) before: ${before}, after: ${loadAverage()}`, '', FIRST_RUN_HEADING, ...rows].join('\n'));
    return;
  }
  const flops = new Map(sizes.map((size) => [size, stageFlops(model, size)]));
  const before = loadAverage();
  process.stderr.write('measuring the fp32 peak…\n');
  const peaks = [await measurePeak()];
  const results: Measured[] = [];
  const outputs = join(benchRoot(), 'outputs');
  mkdirSync(outputs, { recursive: true });
  for (const size of sizes) {
    for (const dtype of dtypes) {
      process.stderr.write(`measuring ${size}×${size} ${dtype} in a child process…\n`);
      const prefix = join(outputs, `${size}-${dtype}`);
      const args = ['--model', model, '--size', String(size), '--dtype', dtype, '--save-outputs', prefix];
      const result: Measured = await runChild([...args, '--steps', values.steps, '--decodes', values.decodes, ...experiment]);
      const reference = join(outputs, `${size}-fp32`);
      if (dtype !== 'fp32' && dtypes.includes('fp32')) {
        result.unetRelativeError = relativeError(readF32(`${prefix}.unet.f32`), readF32(`${reference}.unet.f32`));
        result.textRelativeError = relativeError(readF32(`${prefix}.text.f32`), readF32(`${reference}.text.f32`));
      }
      results.push(result);
    }
  }
  const extra: Rows = { rates: [], lines: [] };
  const add = (rows: Rows) => {
    extra.rates.push(...rows.rates);
    extra.lines.push(...rows.lines);
  };
  if (values.taesd) add(await taesdRows(Number(values.taesd), 3)); // the decoders after a cold run each, as bench:taesd
  const sdxlUNet = values.sdxl ? (values['sdxl-unet'] ?? ensureRandomSdxlUNet()) : undefined;
  if (values.sdxl) add(await sdxlRows(sdxlUNet!, values.sdxl.split(',').map(Number), dtypes, Number(values.steps), outputs));
  if (pictureKinds.length) {
    const options = { model, taesd: ensureRandomTaesd(), kinds: pictureKinds, dtypes, runs: pictureRuns, size: Number(values['picture-size']), outputs };
    extra.lines.push(...(await pictureRows(options)));
  }
  const firstRuns: string[] = [];
  if (values['first-run']) {
    for (const size of sizes) for (const dtype of dtypes) firstRuns.push(await firstRunRow(model, size, dtype, experiment));
  }
  process.stderr.write('measuring the fp32 peak again…\n');
  peaks.push(await measurePeak());
  const config = experiment.length ? `; experiment: ${experiment.join(' ')}` : '; engine defaults';
  const weights = [...(usesSd15 ? [`${values.fp16 ? 'fp16' : 'fp32'} random SD-1.5 (${model})`] : []), ...(sdxlUNet ? [`random SDXL base UNet (${sdxlUNet})`] : [])];
  const { text, errors } = report(results, flops, peaks, `${weights.join(', ') || 'none'}${config}`, { before, after: loadAverage() }, extra);
  console.log(text);
  if (firstRuns.length) console.log(['', FIRST_RUN_HEADING, ...firstRuns].join('\n'));
  if (errors.length) process.exitCode = 1;
}

/** Time to the first UNet step: configs, text encoder session and run, UNet session, one step. */
const toFirstStep = (r: StageResult) => r.loadS + r.textSessionS + r.textEncodeS + r.unetSessionS + r.unetFirstStepS;

const FIRST_RUN_HEADING = 'first run (an empty graph cache) against the next run on the same cache; peak RSS of the run and every process it started:';

/**
 * The first-run row: one child on an empty graph cache (it builds ONNX Runtime's optimised graphs,
 * and for q8 the int8 weights), then one on the cache it left, each to its first UNet step. Each
 * peak is that of the child and every process under it (tree-rss.ts), and the two first UNet
 * predictions must be the same.
 */
async function firstRunRow(model: string, size: number, dtype: string, experiment: string[]): Promise<string> {
  // In the temporary folder, not beside the model (which may be read-only, like the shared fixtures).
  const scratch = mkdtempSync(join(os.tmpdir(), 'nuri-first-run-'));
  const cache = join(scratch, 'cache');
  const outputs = join(scratch, 'outputs');
  mkdirSync(outputs, { recursive: true });
  try {
    const args = ['--model', model, '--size', String(size), '--dtype', dtype, '--cache', cache, '--steps', '1', '--decodes', '0', ...experiment];
    process.stderr.write(`first run at ${size}² ${dtype} (empty cache)…\n`);
    const first = await runChildSampled([...args, '--save-outputs', join(outputs, 'first'), '--leave-cache-build']);
    process.stderr.write(`waiting for the optimised graphs the first run left to child processes…\n`);
    const build = await optimisedGraphsBuilt(cache);
    process.stderr.write(`warm run at ${size}² ${dtype}…\n`);
    const warm = await runChildSampled([...args, '--save-outputs', join(outputs, 'warm')]);
    const difference = relativeError(readF32(join(outputs, 'first.unet.f32')), readF32(join(outputs, 'warm.unet.f32')));
    const ratio = toFirstStep(first.result) / toFirstStep(warm.result);
    const load = loadAverage();
    return `  ${size}² ${dtype}: to the first UNet step ${s(toFirstStep(first.result))} (UNet session ${s(first.result.unetSessionS)}) vs ${s(toFirstStep(warm.result))} warm (UNet session ${s(warm.result.unetSessionS)}): ` +
      `${ratio.toFixed(2)}× (goal ≤ 1.5×); peak RSS ${gb(first.treePeakBytes)} (${first.processes} process${first.processes === 1 ? '' : 'es'}) vs ${gb(warm.treePeakBytes)} warm; ` +
      `then ${build.graphs} optimised graphs written by children after it exited, one at a time: ${s(build.seconds)} in all, peak RSS ${gb(build.peakRssBytes)}; ` +
      `first vs warm UNet prediction: relative error ${difference.toExponential(1)}; load average ${load}`;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
