// `npm run bench:edit`: what Prompt-to-Prompt costs next to plain generation with the same settings
// (an edit makes two pictures, source and edit, in one guided batch of 4: target ≤ 2.2× one plain
// picture), the overhead of capturing cross-attention maps, and null-text inversion per step.
// Runs the full-size random SD-1.5 checkpoint of bench/random-checkpoint.ts when it is on disk
// (making one takes long, so it is not made here), else the tiny fixture model, and says which.
//
// Each part runs in a child process of its own: every distinct UNet graph is an ONNX Runtime
// session with its own copy of the weights, and four full-size copies do not fit beside the rest.
// Within a part, plain generation and the pipeline it is compared with run interleaved.
//
//   npm run bench:edit [-- --size 512] [--steps 3] [--rounds 1] [--runs 3] [--inner 2] [--parts edit,attention,null-text]
//
// Measured on the quiet 2-core dev machine with two intra-op threads (2026-12-01), full-size random
// SD-1.5 fp32, DDIM, guidance 7.5, `--steps 2 --parts edit,attention`:
//   512²: edit ÷ generate 1.93× (36.8 s vs 19.1 s; UNet step 10.7 s vs 5.23 s); attention-map
//         capture −1% (noise); peak RSS 14.9 GB (plain + P2P sessions), 11.0 GB (plain + store)
// Earlier, with one thread and a load average of 3–9 (single calls ±20%):
//   512², 2 steps: edit ÷ generate 1.96× (127 s vs 65 s); attention-map capture ±2% (noise);
//                  null-text 24.8 s per Adam iteration (2.6× a 9.5 s forward), ≤ 267 s per step;
//                  peak RSS 14.8 GB (plain + P2P sessions), 16.5 GB (plain + gradient sessions)
//   256², 3 steps: edit ÷ generate 1.99×; null-text 8.5 s per iteration (2.5× a forward)

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Parameter } from '../src/engine/index.ts';
import { PromptToPromptControl, compileControlledUNet } from '../src/pipelines/attention-control.ts';
import { AttentionStore } from '../src/pipelines/attention-store.ts';
import { createImage } from '../src/io/image.ts';
import { crossAttentionMaps } from '../src/pipelines/attention-maps.ts';
import { edit } from '../src/pipelines/edit.ts';
import { generate } from '../src/pipelines/generate.ts';
import { compileNullTextStep, ddim, ddimInversion } from '../src/pipelines/inversion.ts';
import { planPromptToPrompt, promptToPromptFeeds } from '../src/pipelines/prompt-to-prompt.ts';
import { StableDiffusion } from '../src/pipelines/stable-diffusion.ts';
import { randomCheckpointDir } from './random-checkpoint.ts';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '512' },
    steps: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '1' },
    inner: { type: 'string', default: '2' },
    runs: { type: 'string', default: '3' },
    part: { type: 'string' },
    parts: { type: 'string', default: 'edit,attention,null-text' },
  },
});

const fullSize = randomCheckpointDir();
const haveFullSize = existsSync(join(fullSize, '.complete'));
const fixtures = process.env.NURI_FIXTURES ?? join(import.meta.dirname, '..', '..', 'shared', 'fixtures');
const modelPath = haveFullSize ? fullSize : join(fixtures, 'tiny-sd');
const size = haveFullSize ? Number(values.size) : Math.min(Number(values.size), 128);
const steps = Number(values.steps);
const prompts = { source: 'a cat riding a bike', target: 'a dog riding a bike' };

type Part = 'edit' | 'attention' | 'null-text';
const PARTS: Part[] = ['edit', 'attention', 'null-text'];

/** Seconds, per kind of call: the cold first call, the steady calls, and their UNet steps after the first. */
interface CallTimes {
  cold: number;
  totals: number[];
  steps: number[];
}

interface PartResult {
  calls: Record<string, CallTimes>;
  /** Bare UNet runs (session.run only), interleaved: seconds per run, by graph and batch. */
  runs: Record<string, number[]>;
  /** Null-text only: gradient graph compile, one Adam iteration, one plain forward, DDIM inversion per step. */
  gradCompile?: number;
  iteration?: number;
  forward?: number;
  ddimStep?: number;
  peakRss: number;
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const since = (t0: number) => (performance.now() - t0) / 1000;

/** Times one pipeline call: its total and the gaps between its steps (the first gap also encodes prompts). */
async function timed(run: (onStep: () => void) => Promise<unknown>): Promise<{ total: number; steps: number[] }> {
  const marks = [performance.now()];
  await run(() => marks.push(performance.now()));
  const total = since(marks[0]);
  return { total, steps: marks.slice(2).map((m, i) => (m - marks[i + 1]) / 1000) };
}

/**
 * Plain generation against one other pipeline in the same process, calls interleaved so that a
 * change in the machine's load (the cores are shared) slows both alike; then bare UNet runs, also
 * interleaved, to split the cost into the larger batch and the attention control itself.
 */
async function measure(part: Part): Promise<PartResult> {
  const sd = StableDiffusion.load(modelPath);
  const settings = { steps, width: size, height: size, seed: 1, guidance: 7.5, scheduler: 'ddim' as const };
  const peakRss = () => process.resourceUsage().maxRSS * 1024;
  if (part === 'null-text') return { ...(await measureNullText(sd)), calls: {}, runs: {}, peakRss: peakRss() };
  const calls: Record<string, (onStep: () => void, n: number) => Promise<unknown>> = {
    generate: (onStep, n) => generate(sd, { ...settings, steps: n, prompts: [prompts.source], onStep }),
    [part]: part === 'edit'
      ? (onStep, n) => edit(sd, { ...settings, steps: n, ...prompts, onStep })
      : (onStep, n) => crossAttentionMaps(sd, { ...settings, steps: n, prompt: prompts.source, onStep }),
  };
  const times: Record<string, CallTimes> = {};
  for (const [name, call] of Object.entries(calls)) times[name] = { cold: (await timed((onStep) => call(onStep, 1))).total, totals: [], steps: [] };
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const [name, call] of Object.entries(calls)) {
      const t = await timed((onStep) => call(onStep, steps));
      times[name].totals.push(t.total);
      times[name].steps.push(...t.steps);
    }
  }
  return { calls: times, runs: await bareRuns(sd, part), peakRss: peakRss() };
}

/** session.run alone: the plain UNet at batch 2 and 4, and the controlled UNet of `part`. */
async function bareRuns(sd: StableDiffusion, part: 'edit' | 'attention'): Promise<Record<string, number[]>> {
  const h = size / 8;
  const plain = await sd.unet();
  const batch = part === 'edit' ? 4 : 2;
  const hook = part === 'edit' ? new PromptToPromptControl({ batch, tokens: 77 }) : new AttentionStore({ height: h / 4, width: h / 4, rows: [1, 2] });
  const controlled = await compileControlledUNet(sd, [batch, 4, h, h], hook);
  const plan = planPromptToPrompt(sd.components.tokenizer, prompts, steps);
  const context = (b: number) => new Float32Array(b * 77 * sd.contextShape[1]).fill(0.1);
  const latents = (b: number) => new Float32Array(b * 4 * h * h).fill(0.5);
  const runs: Record<string, () => Promise<unknown>> = {
    'plain, batch 2': () => sd.predictNoise(plain, latents(2), [2, 4, h, h], 500, context(2)),
    ...(part === 'edit' ? { 'plain, batch 4': () => sd.predictNoise(plain, latents(4), [4, 4, h, h], 500, context(4)) } : {}),
    [part === 'edit' ? 'P2P, batch 4' : 'store, batch 2']: () => sd.predictNoise(controlled, latents(batch), [batch, 4, h, h], 500, context(batch), part === 'edit' ? promptToPromptFeeds(plan, 0) : {}),
  };
  const times: Record<string, number[]> = {};
  for (let r = 0; r < Number(values.runs); r++) {
    for (const [name, run] of Object.entries(runs)) {
      const t0 = performance.now();
      await run();
      (times[name] ??= []).push(since(t0));
    }
  }
  return times;
}

/** The gradient graph (UNet forward + backward to the null-text embedding), timed per Adam iteration. */
async function measureNullText(sd: StableDiffusion) {
  const picture = createImage(size, size, [0.8, 0.5, 0.2]);
  const encoded = await sd.vaeRunner.imageToLatents(Float32Array.from(picture.data, (v) => 2 * v - 1), [1, 3, size, size]);
  const [cond, uncond] = [await sd.encodePrompts([prompts.source]), await sd.encodePrompts([''])];
  const scheduler = ddim(sd, steps);
  await sd.unet();
  let t0 = performance.now();
  const trajectory = await ddimInversion(sd, scheduler, encoded.data, encoded.shape, cond);
  const ddimStep = since(t0) / steps;
  const forwards: number[] = [];
  for (let i = 0; i < 2; i++) {
    t0 = performance.now();
    await sd.predictNoise(await sd.unet(), trajectory[steps], encoded.shape, scheduler.timesteps[0], cond);
    forwards.push(since(t0));
  }
  const embedding = new Parameter('null_text_embedding', [1, ...sd.contextShape]);
  embedding.setValue(uncond);
  t0 = performance.now();
  const gradStep = await compileNullTextStep(sd, encoded.shape, embedding);
  const gradCompile = since(t0);
  const shape = [...encoded.shape];
  const feeds = {
    sample: { data: trajectory[steps], shape },
    timestep: { data: Float32Array.of(scheduler.timesteps[0]), shape: [1] },
    noise_pred_cond: { data: trajectory[steps], shape },
    target: { data: trajectory[steps - 1], shape },
    ddim_coefficients: { data: Float32Array.of(1, -0.5), shape: [2] },
    guidance: { data: Float32Array.of(7.5), shape: [1] },
  };
  const iterations: number[] = [];
  for (let i = 0; i <= Number(values.inner); i++) {
    t0 = performance.now();
    await gradStep.run(feeds);
    if (i > 0) iterations.push(since(t0)); // the first run allocates
  }
  return { gradCompile, iteration: median(iterations), forward: Math.min(...forwards), ddimStep };
}

/** Runs one part in a fresh Node process (with tsx's loader, as this one has). */
function runChild(part: Part): Promise<PartResult> {
  const args = [...process.execArgv, import.meta.filename, ...process.argv.slice(2), '--part', part];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const line = out.split('\n').find((l) => l.startsWith('@@result '));
      if (code !== 0 || !line) reject(new Error(`bench part ${part} exited with ${code ?? signal}\n${out}`));
      else resolve(JSON.parse(line.slice('@@result '.length)) as PartResult);
    });
  });
}

function report(results: Partial<Record<Part, PartResult>>, loadBefore: string): string {
  const s = (x: number) => (x < 10 ? `${x.toFixed(2)} s` : `${x.toFixed(1)} s`);
  const gb = (b: number) => `${(b / 1e9).toFixed(1)} GB`;
  const lines = [
    `machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${gb(os.totalmem())} RAM; load average before ${loadBefore}, after ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}`,
    `model: ${haveFullSize ? 'full-size random SD-1.5, fp32' : 'tiny fixture (the full-size random checkpoint is not on disk)'}; ${size}×${size}, ${steps} DDIM steps, guidance 7.5; medians of ${values.rounds} interleaved call(s) after a cold one, ${values.runs} bare UNet runs`,
  ];
  for (const part of ['edit', 'attention'] as const) {
    const result = results[part];
    if (!result) continue;
    const { calls, runs, peakRss } = result;
    const [plain, other] = [calls.generate, calls[part]];
    const callRatio = median(other.totals) / median(plain.totals);
    lines.push('', `${part === 'edit' ? 'edit (source + edit)' : 'attention maps'} next to generate (1 picture), in one process (peak RSS ${gb(peakRss)}):`);
    lines.push(`  whole call   generate ${s(median(plain.totals))}, ${part} ${s(median(other.totals))}: ${callRatio.toFixed(2)}×  (cold calls ${s(plain.cold)}, ${s(other.cold)})`);
    lines.push(`  UNet step    generate ${s(median(plain.steps))}, ${part} ${s(median(other.steps))}: ${(median(other.steps) / median(plain.steps)).toFixed(2)}×`);
    lines.push(`  bare runs    ${Object.entries(runs).map(([name, ts]) => `${name} ${s(median(ts))}`).join(', ')}`);
    if (part === 'edit') {
      const control = median(runs['P2P, batch 4']) / median(runs['plain, batch 4']);
      lines.push(`  edit ÷ generate ${callRatio.toFixed(2)}× (target ≤ 2.2×: ${callRatio <= 2.2 ? 'met' : 'MISSED'}); of a UNet step, the batch of 4 costs ${(median(runs['plain, batch 4']) / median(runs['plain, batch 2'])).toFixed(2)}× and the attention control ${control.toFixed(2)}× on top`);
    } else {
      lines.push(`  capture overhead ${(100 * (callRatio - 1)).toFixed(1)}% of the call, ${(100 * (median(runs['store, batch 2']) / median(runs['plain, batch 2']) - 1)).toFixed(1)}% of a bare UNet run`);
    }
  }
  const nt = results['null-text'];
  if (nt) lines.push(
    '',
    `DDIM inversion: ${s(nt.ddimStep!)} per step (one UNet forward, batch 1: ${s(nt.forward!)})`,
    `null-text: gradient graph compile ${s(nt.gradCompile!)}; one Adam iteration (forward + backward, batch 1) ${s(nt.iteration!)} = ${(nt.iteration! / nt.forward!).toFixed(2)}× a forward`,
    `null-text per step: ${s(2 * nt.forward! + 10 * nt.iteration!)} at the full 10 iterations, ${s(2 * nt.forward! + nt.iteration!)} when it stops after one; peak RSS ${gb(nt.peakRss)}`,
  );
  return lines.join('\n');
}

if (values.part) {
  console.log(`@@result ${JSON.stringify(await measure(values.part as Part))}`);
} else {
  const loadBefore = os.loadavg().map((l) => l.toFixed(2)).join(', ');
  process.stderr.write(`model: ${haveFullSize ? fullSize : 'tiny fixture (no full-size random checkpoint on disk)'}, ${size}×${size}\n`);
  const results: Partial<Record<Part, PartResult>> = {};
  for (const part of values.parts.split(',') as Part[]) {
    if (!PARTS.includes(part)) throw new Error(`--parts: unknown part ${part}; expected ${PARTS.join(', ')}`);
    process.stderr.write(`measuring ${part} in a child process…\n`);
    results[part] = await runChild(part);
  }
  console.log(report(results, loadBefore));
}
