// `npm run bench:train`: the cost of one UNet training step on the tiny fixture UNet at batch 8
// (32×32 latents): forward + backward in one graph, then AdamW in TS, against the forward pass
// alone at the same batch. Target: a full step ≤ 3.5× the forward. Also the peak RSS.

import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { AdamW, type Feeds, Generator, Tensor, compile } from '../src/engine/index.ts';
import { loadUNet } from '../src/models/checkpoint/components.ts';
import { createScheduler } from '../src/schedulers/index.ts';
import { compileTrainStep, diffusionFeeds, diffusionInputs, diffusionLoss, drawNoising } from '../src/training/index.ts';

const FIXTURES = process.env.NURI_FIXTURES ?? join(import.meta.dirname, '..', '..', 'shared', 'fixtures');
const TINY_SD = join(FIXTURES, 'tiny-sd');
const REPEATS = Number(process.env.BENCH_REPEATS ?? 7);
const BATCH = 8;
const LATENT: [number, number, number] = [4, 32, 32];

/**
 * Median times of several functions measured in turn within each round, so that a machine whose
 * load changes (shared cores) slows all of them alike and their ratios stay meaningful.
 */
async function interleavedMedians(fns: (() => Promise<unknown>)[]): Promise<number[]> {
  for (const fn of fns) await fn(); // warm-up: first runs allocate
  const times = fns.map(() => [] as number[]);
  for (let r = 0; r < REPEATS; r++) {
    for (const [i, fn] of fns.entries()) {
      const t0 = performance.now();
      await fn();
      times[i].push(performance.now() - t0);
    }
  }
  return times.map((ts) => ts.sort((a, b) => a - b)[Math.floor(ts.length / 2)]);
}

const schedulerConfig = JSON.parse(readFileSync(join(TINY_SD, 'scheduler', 'scheduler_config.json'), 'utf8'));
const alphasCumprod = createScheduler('ddpm', schedulerConfig).alphasCumprod;
const rng = new Generator(0);
const latentSize = LATENT[0] * LATENT[1] * LATENT[2];
const shape = [BATCH, ...LATENT] as [number, number, number, number];
const { timesteps, noise } = drawNoising(rng, BATCH, latentSize, 1000);
const feeds: Feeds = {
  ...diffusionFeeds(alphasCumprod, rng.randn(BATCH * latentSize), shape, noise, timesteps),
  encoder_hidden_states: { data: rng.randn(BATCH * 77 * 32), shape: [BATCH, 77, 32] },
};

// Forward alone: the inference graph (frozen weights), as sampling runs it.
const frozen = loadUNet(join(TINY_SD, 'unet'));
const sample = Tensor.input('sample', shape);
const t = Tensor.input('timestep', [BATCH]);
const ctx = Tensor.input('encoder_hidden_states', [BATCH, 77, 32]);
const forwardGraph = await compile({ inputs: [sample, t, ctx], outputs: { eps: frozen.forward(sample, t, ctx) } });
const forwardFeeds = { sample: feeds.latents, timestep: feeds.timestep, encoder_hidden_states: feeds.encoder_hidden_states };

// Training step: every UNet parameter trainable.
const unet = loadUNet(join(TINY_SD, 'unet'));
const inputs = diffusionInputs(BATCH, LATENT);
const context = Tensor.input('encoder_hidden_states', [BATCH, 77, 32]);
const { loss } = diffusionLoss(unet, inputs, context);
const t0 = performance.now();
const step = await compileTrainStep({ inputs: [...Object.values(inputs), context], loss, params: unet.parameters() });
const compileMs = performance.now() - t0;
const optimizer = new AdamW(step.params, { lr: 1e-5 });
let optimiserMs = 0;
const [forwardMs, fwdBwdMs, stepMs] = await interleavedMedians([
  () => forwardGraph.run(forwardFeeds),
  () => step.run(feeds),
  async () => {
    const out = await step.run(feeds);
    const t1 = performance.now();
    optimizer.step(out.grads);
    optimiserMs = performance.now() - t1;
  },
]);
const count = step.params.reduce((s, p) => s + p.size, 0);

const ms = (x: number) => `${x.toFixed(1)} ms`;
console.log(`tiny fixture UNet (${(count / 1e6).toFixed(2)}M parameters), batch ${BATCH}, latents ${LATENT.join('×')}, median of ${REPEATS}, interleaved`);
console.log(`  forward alone (inference graph)      ${ms(forwardMs)}`);
console.log(`  forward + backward (one graph)     ${ms(fwdBwdMs)}`);
console.log(`  AdamW update (TS, last step)        ${ms(optimiserMs)}`);
console.log(`  training step incl. AdamW            ${ms(stepMs)}`);
console.log(`  ratio step / forward                 ${(stepMs / forwardMs).toFixed(2)}×  (target ≤ 3.5×)`);
console.log(`  compile (trace + grad + emit + session) ${ms(compileMs)}`);
console.log(`  peak RSS                             ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
