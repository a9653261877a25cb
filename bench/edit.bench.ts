// `npm run bench:edit`: what Prompt-to-Prompt costs next to plain generation with the same settings
// (an edit makes two pictures, source and edit, in one guided batch of 4: target ≤ 2.2× one plain
// picture), the overhead of capturing cross-attention maps, and null-text inversion per step.
// Runs the full-size random SD-1.5 checkpoint of bench/random-checkpoint.ts when it is on disk
// (making one takes long, so it is not made here), else the tiny fixture model, and says which.
//
//   npm run bench:edit [-- --size 512] [--steps 3] [--rounds 1] [--inner 2]

import { existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Parameter } from '../src/engine/index.ts';
import { createImage } from '../src/io/image.ts';
import { crossAttentionMaps } from '../src/pipelines/attention-maps.ts';
import { edit } from '../src/pipelines/edit.ts';
import { generate } from '../src/pipelines/generate.ts';
import { compileNullTextStep, ddim, ddimInversion } from '../src/pipelines/inversion.ts';
import { StableDiffusion } from '../src/pipelines/stable-diffusion.ts';
import { randomCheckpointDir } from './random-checkpoint.ts';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '512' },
    steps: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '1' },
    inner: { type: 'string', default: '2' },
  },
});
const steps = Number(values.steps);
const rounds = Number(values.rounds);
const inner = Number(values.inner);

const fullSize = randomCheckpointDir();
const haveFullSize = existsSync(join(fullSize, '.complete'));
const fixtures = process.env.NURI_FIXTURES ?? join(import.meta.dirname, '..', '..', 'shared', 'fixtures');
const modelPath = haveFullSize ? fullSize : join(fixtures, 'tiny-sd');
const size = haveFullSize ? Number(values.size) : Math.min(Number(values.size), 128);
const sd = StableDiffusion.load(modelPath);

const settings = { steps, width: size, height: size, seed: 1, guidance: 7.5, scheduler: 'ddim' as const };
const prompts = { source: 'a cat riding a bike', target: 'a dog riding a bike' };

interface Timing {
  total: number;
  /** Seconds per UNet step after the first (the first also encodes the prompts). */
  steps: number[];
}

async function timed(run: (onStep: () => void) => Promise<unknown>): Promise<Timing> {
  const marks = [performance.now()];
  await run(() => marks.push(performance.now()));
  const end = performance.now();
  return { total: (end - marks[0]) / 1000, steps: marks.slice(2).map((m, i) => (m - marks[i + 1]) / 1000) };
}

const jobs = {
  generate: (onStep: () => void, n = steps) => generate(sd, { ...settings, steps: n, prompts: [prompts.source], onStep }),
  edit: (onStep: () => void, n = steps) => edit(sd, { ...settings, steps: n, ...prompts, onStep }),
  attention: (onStep: () => void, n = steps) => crossAttentionMaps(sd, { ...settings, steps: n, prompt: prompts.source, onStep }),
};
type Job = keyof typeof jobs;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const s = (x: number) => (x < 10 ? `${x.toFixed(2)} s` : `${x.toFixed(1)} s`);
const load = () => os.loadavg().map((l) => l.toFixed(2)).join(', ');
const log = (line: string) => process.stderr.write(`${line}\n`);

const loadBefore = load();
log(`model: ${haveFullSize ? `full-size random SD-1.5 (${fullSize})` : `tiny fixture (no complete ${fullSize}; run bench/random-checkpoint.ts)`}, ${size}×${size}, ${steps} DDIM steps`);

// Cold calls compile (or load cached) sessions: timed apart from the steady state.
const cold: Record<string, number> = {};
for (const name of Object.keys(jobs) as Job[]) {
  log(`cold ${name} (1 step)…`);
  cold[name] = (await timed((onStep) => jobs[name](onStep, 1))).total;
}
const warm: Record<Job, Timing[]> = { generate: [], edit: [], attention: [] };
for (let r = 0; r < rounds; r++) {
  for (const name of Object.keys(jobs) as Job[]) {
    log(`round ${r + 1}: ${name}…`);
    warm[name].push(await timed((onStep) => jobs[name](onStep)));
  }
}
const total = (name: Job) => median(warm[name].map((t) => t.total));
const step = (name: Job) => median(warm[name].flatMap((t) => t.steps));

// Null-text inversion: the gradient graph (UNet forward + backward to the null-text embedding),
// timed per Adam iteration; one step is ε_cond, up to 10 iterations, and the guided DDIM step.
log('null-text: DDIM-inverting a picture and compiling the gradient graph…');
const picture = createImage(size, size, [0.8, 0.5, 0.2]);
const pixels = Float32Array.from(picture.data, (v) => 2 * v - 1);
const encoded = await sd.vaeRunner.imageToLatents(pixels, [1, 3, size, size]);
const [cond, uncond] = [await sd.encodePrompts([prompts.source]), await sd.encodePrompts([''])];
const scheduler = ddim(sd, steps);
let t0 = performance.now();
const trajectory = await ddimInversion(sd, scheduler, encoded.data, encoded.shape, cond);
const ddimPerStep = (performance.now() - t0) / 1000 / steps;
const embedding = new Parameter('null_text_embedding', [1, ...sd.contextShape]);
embedding.trainable = true;
embedding.setValue(uncond);
t0 = performance.now();
const gradStep = await compileNullTextStep(sd, encoded.shape, embedding);
const gradCompile = (performance.now() - t0) / 1000;
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
for (let i = 0; i <= inner; i++) {
  t0 = performance.now();
  await gradStep.run(feeds);
  if (i > 0) iterations.push((performance.now() - t0) / 1000); // the first run allocates
}
const iteration = median(iterations);
const unet = await sd.unet();
const forwards: number[] = [];
for (let i = 0; i < 2; i++) {
  t0 = performance.now();
  await sd.predictNoise(unet, trajectory[steps], encoded.shape, scheduler.timesteps[0], cond);
  forwards.push((performance.now() - t0) / 1000);
}
const forward = Math.min(...forwards);

const editRatio = total('edit') / total('generate');
const lines = [
  `machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores; load average before ${loadBefore}, after ${load()}`,
  `model: ${haveFullSize ? 'full-size random SD-1.5 (fp32)' : 'tiny fixture (the full-size random checkpoint is not on disk)'}; ${size}×${size}, ${steps} DDIM steps, guidance 7.5, median of ${rounds} round(s)`,
  '',
  `cold first call (sessions)  generate ${s(cold.generate)}, edit ${s(cold.edit)}, attention maps ${s(cold.attention)}`,
  `generate, 1 picture          ${s(total('generate'))}   UNet step (batch 2) ${s(step('generate'))}`,
  `edit, source + edit          ${s(total('edit'))}   UNet step (batch 4, P2P) ${s(step('edit'))}`,
  `attention maps, 1 picture    ${s(total('attention'))}   UNet step (batch 2, store) ${s(step('attention'))}`,
  '',
  `edit ÷ generate: ${editRatio.toFixed(2)}× whole call, ${(step('edit') / step('generate')).toFixed(2)}× per UNet step (target ≤ 2.2×: ${editRatio <= 2.2 ? 'met' : 'MISSED'})`,
  `attention-map capture overhead: ${(100 * (total('attention') / total('generate') - 1)).toFixed(1)}% whole call, ${(100 * (step('attention') / step('generate') - 1)).toFixed(1)}% per UNet step`,
  '',
  `DDIM inversion: ${s(ddimPerStep)} per step (one UNet call, batch 1)`,
  `null-text: gradient graph compile ${s(gradCompile)}; one Adam iteration (UNet forward + backward, batch 1) ${s(iteration)} = ${(iteration / forward).toFixed(2)}× a forward (${s(forward)})`,
  `null-text per step: ${s(2 * forward + 10 * iteration)} at the full 10 iterations, ${s(2 * forward + iteration)} when it stops after one`,
  `peak RSS ${(process.resourceUsage().maxRSS / 1e6).toFixed(2)} GB`,
];
console.log(lines.join('\n'));
