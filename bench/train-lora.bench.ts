// `npm run bench:train:lora`: one LoRA training step of the SD-1.5 UNet (860M frozen parameters,
// rank-4 adapters on every attention projection) at 512×512 (64×64 latents), batch 1, against the
// UNet's forward pass alone at the same size. Target: a step ≤ 3.5× the forward. Also the peak RSS.
// Uses the random-weight SD-1.5 folder from bench/random-checkpoint.ts (run that first).
// The two are measured one after the other, the forward session released before the training one
// is built, so that the peak RSS is the training step's and not both sessions' weights at once.
//
//   BENCH_REPEATS=3 BENCH_RANK=4 BENCH_SIZE=512 npm run bench:train:lora

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AdamW, Generator, Tensor, clearSessionCache, compile } from '../src/engine/index.ts';
import { LoraNetwork } from '../src/models/lora.ts';
import { loadUNet } from '../src/models/checkpoint/components.ts';
import { createScheduler } from '../src/schedulers/index.ts';
import { compileTrainStep, diffusionFeeds, diffusionInputs, diffusionLoss, drawNoising } from '../src/training/index.ts';

const MODEL = process.env.NURI_BENCH_DIR ?? resolve(import.meta.dirname, '..', '.cache', 'bench', 'sd15-random');
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const RANK = Number(process.env.BENCH_RANK ?? 4);
const SIZE = Number(process.env.BENCH_SIZE ?? 512);
const LATENT: [number, number, number] = [4, SIZE / 8, SIZE / 8];
const CONTEXT: [number, number] = [77, 768];

if (!existsSync(join(MODEL, '.complete'))) {
  console.error(`no SD-1.5 random-weight checkpoint at ${MODEL}: write it with \`npx tsx bench/random-checkpoint.ts\``);
  process.exit(1);
}

/** Median time of `fn` after one warm-up run (first runs allocate). */
async function median(fn: () => Promise<unknown>): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
}

const rng = new Generator(0);
const alphasCumprod = createScheduler('ddpm', {}).alphasCumprod;
const latentSize = LATENT[0] * LATENT[1] * LATENT[2];
const shape = [1, ...LATENT] as [number, number, number, number];
const { timesteps, noise } = drawNoising(rng, 1, latentSize, 1000);
const noising = diffusionFeeds(alphasCumprod, rng.randn(latentSize), shape, noise, timesteps);
const states = { data: rng.randn(CONTEXT[0] * CONTEXT[1]), shape: [1, ...CONTEXT] };
const feeds = { ...noising, encoder_hidden_states: states };

// Forward alone: the inference graph with its weights in the checkpoint file, as sampling runs it.
const unet = loadUNet(join(MODEL, 'unet'));
const sample = Tensor.input('sample', shape);
const t = Tensor.input('timestep', [1]);
const ctx = Tensor.input('encoder_hidden_states', [1, ...CONTEXT]);
let t0 = performance.now();
const forwardGraph = await compile({ inputs: [sample, t, ctx], outputs: { eps: unet.forward(sample, t, ctx) } });
const forwardCompileMs = performance.now() - t0;
const forwardFeeds = { sample: noising.latents, timestep: noising.timestep, encoder_hidden_states: states };
const sec = (x: number) => `${(x / 1000).toFixed(2)} s`;
const mib = (kb: number) => `${(kb / 1024).toFixed(0)} MiB`;
console.log(`SD-1.5 UNet + rank-${RANK} LoRA on every attention projection, ${SIZE}×${SIZE}, batch 1, median of ${REPEATS}`);
const forwardMs = await median(() => forwardGraph.run(forwardFeeds));
const forwardRss = process.resourceUsage().maxRSS;
console.log(`  forward alone (inference graph)        ${sec(forwardMs)}  (compile ${sec(forwardCompileMs)}, peak RSS ${mib(forwardRss)})`);
await forwardGraph.session.release();
clearSessionCache();

// LoRA step: adapters on the same UNet object (the forward graph above was traced before they existed).
const network = LoraNetwork.create({ unet }, { rank: RANK }, new Generator(1));
const inputs = diffusionInputs(1, LATENT);
const context = Tensor.input('encoder_hidden_states', [1, ...CONTEXT]);
t0 = performance.now();
const { loss } = diffusionLoss(unet, inputs, context);
const step = await compileTrainStep({ inputs: [...Object.values(inputs), context], loss, params: network.parameters() });
const stepCompileMs = performance.now() - t0;
const optimizer = new AdamW(step.params, { lr: 1e-4 });
const stepMs = await median(async () => optimizer.step((await step.run(feeds)).grads));
const adapters = step.params.reduce((s, p) => s + p.size, 0);
const frozen = unet.parameters().reduce((s, p) => s + p.size, 0);
console.log(`  LoRA training step (fwd+bwd, AdamW)    ${sec(stepMs)}  (compile ${sec(stepCompileMs)}; ${(frozen / 1e6).toFixed(0)}M frozen, ${(adapters / 1e6).toFixed(2)}M trainable)`);
console.log(`  ratio step / forward                   ${(stepMs / forwardMs).toFixed(2)}×  (target ≤ 3.5×)`);
console.log(`  peak RSS with the training step        ${mib(process.resourceUsage().maxRSS)}`);
