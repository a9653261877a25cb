// One resolution of `npm run bench:sd`, run in a child process of its own so that its peak RSS is
// that resolution's alone. Loads the model, creates each session, then times the three model
// calls of a guided txt2img run: the text encoder on 2 prompts, UNet steps at batch 2, and the VAE
// decoding one image. Prints one `@@result {json}` line for the parent.
//
//   npx tsx bench/sd-measure.ts --model DIR --size 512 [--steps 3] [--decodes 1] [--dtype fp32|q8] [--save-outputs PREFIX] [--leave-cache-build]
//
// --save-outputs writes the text encoder's states and the first UNet prediction (PREFIX.text.f32,
// PREFIX.unet.f32, raw float32) for comparing dtypes: the UNet is fed fixed random context states,
// not the encoder's, so its error is its own.
//
// Experiment switches (to try proposed engine changes without editing the engine):
//   --session-options JSON   merged into every ONNX Runtime session's options
//   --plain groupNorm,…      emit these kernels as plain ops (engine `fusedKernels`)
//   --release                free the text encoder's session before the UNet runs and the UNet's
//                            before the VAE's is created, as a low-memory pipeline would

import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { Generator, WEIGHT_DTYPES, type WeightDType, clearSessionCache, fusedKernels, optimizeCachedGraphs } from '../src/engine/index.ts';
import { compileClipText } from '../src/models/clip-text.ts';
import type { Shape4 } from '../src/models/vae-runner.ts';
import { StableDiffusion } from '../src/pipelines/stable-diffusion.ts';
import { median, peakRss, printResult, seconds } from './sd-report.ts';
import { benchRoot } from './random-checkpoint.ts';

export interface StageResult extends UNetSteps {
  size: number;
  dtype: WeightDType;
  /** Seconds. */
  loadS: number;
  textSessionS: number;
  unetSessionS: number;
  vaeSessionS: number;
  /** encodePrompts on 2 prompts (trace + cached session + run), median of 3; and the session run alone. */
  textEncodeS: number;
  textRunS: number;
  textRunCpuS: number;
  /** First (cold) decode, and the median of the later ones. */
  vaeFirstDecodeS: number;
  vaeDecodeS: number;
  vaeDecodeCpuS: number;
  /** Resident memory in bytes after each phase, and the process's peak. */
  rss: Record<string, number>;
  peakRssBytes: number;
}

const PROMPTS = ['a photograph of an astronaut riding a horse on the moon, highly detailed', ''];

function rssNow(): number {
  return process.memoryUsage.rss();
}

export function progress(line: string): void {
  process.stderr.write(`  [${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

export interface MeasureOptions {
  steps: number;
  decodes: number;
  cacheDir: string;
  release: boolean;
  dtype: WeightDType;
  saveOutputs?: string;
}

/** Makes every session this process creates use these extra options (an experiment, not the engine's way). */
function withSessionOptions(extra: ort.InferenceSession.SessionOptions): void {
  const create = ort.InferenceSession.create.bind(ort.InferenceSession) as (path: string | Uint8Array, options?: ort.InferenceSession.SessionOptions) => Promise<ort.InferenceSession>;
  (ort.InferenceSession as { create: unknown }).create = (path: string | Uint8Array, options: ort.InferenceSession.SessionOptions = {}) => create(path, { ...options, ...extra });
}

/** The timed UNet steps of a child: every step after the warm-up, their medians, and the warm-up. */
export interface UNetSteps {
  unetStepsS: number[];
  unetStepS: number;
  unetStepCpuS: number;
  unetFirstStepS: number;
}

const TIMESTEPS = [981, 961, 941, 921, 901, 881, 861, 841, 821, 801];

/** One warm-up step then `steps` timed ones of `step(timestep)`; `first` sees the warm-up's outputs. */
export async function timeUNetSteps(steps: number, label: string, step: (timestep: number) => Promise<Record<string, { data: unknown }>>, first: (out: Record<string, { data: unknown }>) => void): Promise<UNetSteps> {
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i <= steps; i++) {
    const [out, s, c] = await seconds(() => step(TIMESTEPS[i % TIMESTEPS.length]));
    wall.push(s);
    cpu.push(c);
    progress(`${label}: UNet step ${i}${i ? '' : ' (warm-up)'} ${s.toFixed(2)} s (${c.toFixed(1)} CPU s)`);
    if (i === 0) first(out);
  }
  return { unetStepsS: wall.slice(1), unetStepS: median(wall.slice(1)), unetStepCpuS: median(cpu.slice(1)), unetFirstStepS: wall[0] };
}

export async function measureResolution(model: string, size: number, { steps, decodes, cacheDir, release, dtype, saveOutputs }: MeasureOptions): Promise<StageResult> {
  const rss: Record<string, number> = { start: rssNow() };
  const [sd, loadS] = await seconds(() => StableDiffusion.load(model, { run: { cacheDir, dtype } }));
  rss.loaded = rssNow();

  const { textEncoder } = sd.components;
  const [textGraph, textSessionS] = await seconds(() => compileClipText(textEncoder, { run: sd.run }));
  rss.textSession = rssNow();
  const textTimes: number[] = [];
  let context: Float32Array = new Float32Array(0);
  for (let i = 0; i < 3; i++) {
    const [c, s] = await seconds(() => sd.encodePrompts(PROMPTS));
    context = c;
    textTimes.push(s);
  }
  const ids = new BigInt64Array(PROMPTS.length * 77).fill(49407n);
  const textRunTimes: number[] = [];
  const textRunCpu: number[] = [];
  for (let i = 0; i < 3; i++) {
    const [, s, cpu] = await seconds(() => textGraph.run({ input_ids: { data: ids, shape: [PROMPTS.length, 77] } }));
    textRunTimes.push(s);
    textRunCpu.push(cpu);
  }
  progress(`${size}²: text encoder ${median(textTimes).toFixed(2)} s`);
  if (saveOutputs) writeFileSync(`${saveOutputs}.text.f32`, context);
  context = new Generator(1).randn(context.length);
  if (release) {
    await textGraph.session.release();
    clearSessionCache();
  }

  const [unet, unetSessionS] = await seconds(() => sd.unet());
  rss.unetSession = rssNow();
  progress(`${size}²: UNet session in ${unetSessionS.toFixed(1)} s`);
  const f = size / 8;
  const shape: Shape4 = [2, sd.latentChannels, f, f];
  const latents = new Generator(0).randn(shape.reduce((a, b) => a * b, 1));
  const unetSteps = await timeUNetSteps(steps, `${size}²`, (t) => sd.predictNoise(unet, latents, shape, t, context), (out) => {
    rss.unetFirstStep = rssNow();
    if (saveOutputs) writeFileSync(`${saveOutputs}.unet.f32`, out.noise_pred.data as Float32Array);
  });
  rss.unetSteps = rssNow();
  if (release) {
    await unet.session.release();
    clearSessionCache();
    rss.unetReleased = rssNow();
  }

  const [, vaeSessionS] = await seconds(() => sd.vaeRunner.compiledDecoder());
  rss.vaeSession = rssNow();
  const one: Shape4 = [1, sd.latentChannels, f, f];
  const decodeTimes: number[] = [];
  const decodeCpu: number[] = [];
  for (let i = 0; i <= decodes; i++) {
    const [, s, cpu] = await seconds(() => sd.vaeRunner.decodeLatents(latents.subarray(0, one.reduce((a, b) => a * b, 1)), one));
    decodeTimes.push(s);
    decodeCpu.push(cpu);
    progress(`${size}²: VAE decode ${i}${i ? '' : ' (cold)'} ${s.toFixed(2)} s (${cpu.toFixed(1)} CPU s)`);
  }
  rss.vaeDecode = rssNow();

  return {
    size,
    dtype,
    loadS,
    textSessionS,
    unetSessionS,
    vaeSessionS,
    textEncodeS: median(textTimes),
    textRunS: median(textRunTimes),
    textRunCpuS: median(textRunCpu),
    ...unetSteps,
    vaeFirstDecodeS: decodeTimes[0],
    vaeDecodeS: decodes ? median(decodeTimes.slice(1)) : decodeTimes[0],
    vaeDecodeCpuS: decodes ? median(decodeCpu.slice(1)) : decodeCpu[0],
    rss,
    peakRssBytes: peakRss(),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      size: { type: 'string', default: '512' },
      steps: { type: 'string', default: '3' },
      decodes: { type: 'string', default: '1' },
      cache: { type: 'string' },
      'session-options': { type: 'string' },
      plain: { type: 'string' },
      release: { type: 'boolean', default: false },
      dtype: { type: 'string', default: 'fp32' },
      'save-outputs': { type: 'string' },
      'leave-cache-build': { type: 'boolean', default: false },
    },
  });
  if (!WEIGHT_DTYPES.includes(values.dtype as WeightDType)) throw new Error(`--dtype: expected one of ${WEIGHT_DTYPES.join(', ')}`);
  if (!values.model) throw new Error('--model DIR is required');
  if (values['session-options']) withSessionOptions(JSON.parse(values['session-options']) as ort.InferenceSession.SessionOptions);
  for (const kernel of values.plain?.split(',').filter(Boolean) ?? []) {
    if (!(kernel in fusedKernels)) throw new Error(`--plain: unknown kernel ${kernel}; known: ${Object.keys(fusedKernels).join(', ')}`);
    fusedKernels[kernel as keyof typeof fusedKernels] = false;
  }
  const cacheDir = values.cache ?? join(benchRoot(), 'graphs');
  const options = { steps: Number(values.steps), decodes: Number(values.decodes), cacheDir, release: values.release, dtype: values.dtype as WeightDType, saveOutputs: values['save-outputs'] };
  const result = await measureResolution(values.model, Number(values.size), options);
  // The kernel's own view of the peak, to cross-check maxRSS.
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  if (hwm) result.rss.vmHWM = Number(hwm[1]) * 1024;
  printResult(result);
  // Graphs first run here are optimised into the cache by child processes; by default they run now,
  // so that the next measurement starts on a finished cache. --leave-cache-build exits first, as
  // `nuri generate` does: the children then write the cache after this process (bench:sd --first-run).
  if (!values['leave-cache-build']) await optimizeCachedGraphs();
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
