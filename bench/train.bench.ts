// `npm run bench:train`: the cost of one UNet training step on the tiny fixture UNet at batch 8
// (32×32 latents): forward + backward in one graph, then AdamW (WebAssembly), against the forward pass
// alone at the same batch. Target: a full step ≤ 3.5× the forward (issue 15: ≤ 3×). Also the peak RSS.
//
//   npm run bench:train -- [--kept-mib 0,512,1536] [--kept-forward onnx-attention,plain] [--grad-form auto|dense|low-rank]
//                          [--conv-input-grad conv|convTranspose] [--conv-weight-grad im2col,gather,conv]
//                          [--unet DIR --batch 8 --latent 32]   (another diffusers UNet folder: e.g. the
//                          default model's, whose heads are 16–64 wide where the fixture's are 4)
//                          [--grounding 0.1]   (one more step graph with the token-grounding loss,
//                          nuri train unet --grounding: the cross-attention probabilities materialised)
//
// --kept-mib: one training graph per budget for kept attention probabilities (KernelForms.keptBytes,
// MiB; 0 recomputes P in the backward), all timed in the same rounds. The peak RSS is the process's:
// give one budget per run to compare peaks. --kept-forward: the forward of a kept layer (each form
// listed gets a graph per non-zero budget). --grad-form: how the attention backward forms the score
// gradient (engine `attentionGradForm`). --conv-*-grad: the convolution gradients' forms (KernelForms;
// each weight-gradient form listed gets its graphs, timed in the same rounds).

import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AdamW, DEFAULT_KERNELS, type Feeds, type KernelForms, Generator, Tensor, add, attentionGradForm, compile, mul } from '../src/engine/index.ts';
import { loadUNet } from '../src/models/checkpoint/components.ts';
import { createScheduler } from '../src/schedulers/index.ts';
import { type TrainStep, compileTrainStep, diffusionFeeds, diffusionInputs, diffusionLoss, drawNoising } from '../src/training/index.ts';
import { groundingLoss } from '../src/training/grounding.ts';

const { values: args } = parseArgs({
  options: {
    'kept-mib': { type: 'string', default: String(DEFAULT_KERNELS.keptBytes / 2 ** 20) },
    'grad-form': { type: 'string', default: 'auto' },
    'kept-forward': { type: 'string', default: DEFAULT_KERNELS.keptAttentionForward },
    'conv-input-grad': { type: 'string', default: DEFAULT_KERNELS.convInputGrad },
    'conv-weight-grad': { type: 'string', default: DEFAULT_KERNELS.convWeightGrad },
    unet: { type: 'string' },
    batch: { type: 'string', default: '8' },
    latent: { type: 'string', default: '32' },
    grounding: { type: 'string' },
  },
});
const gradForms = ['auto', 'dense', 'low-rank'] as const;
if (!gradForms.includes(args['grad-form'] as never)) throw new Error(`--grad-form: one of ${gradForms.join(', ')}, got "${args['grad-form']}"`);
attentionGradForm.form = args['grad-form'] as (typeof gradForms)[number];
const budgetsMib = args['kept-mib'].split(',').map(Number);
const keptForwards = args['kept-forward'].split(',') as KernelForms['keptAttentionForward'][];
if (keptForwards.some((f) => f !== 'onnx-attention' && f !== 'plain')) throw new Error(`--kept-forward: onnx-attention, plain or both (comma-separated), got "${args['kept-forward']}"`);
const weightGrads = args['conv-weight-grad'].split(',') as KernelForms['convWeightGrad'][];
if (weightGrads.some((f) => !['im2col', 'gather', 'conv'].includes(f))) throw new Error(`--conv-weight-grad: im2col, gather or conv (comma-separated), got "${args['conv-weight-grad']}"`);
if (budgetsMib.some((b) => !(b >= 0))) throw new Error(`--kept-mib: a comma-separated list of MiB (≥ 0), got "${args['kept-mib']}"`);
const FIXTURES = process.env.NURI_FIXTURES ?? join(import.meta.dirname, '..', '..', 'shared', 'fixtures');
const TINY_SD = join(FIXTURES, 'tiny-sd');
const REPEATS = Number(process.env.BENCH_REPEATS ?? 7);
const UNET = args.unet ?? join(TINY_SD, 'unet');
const unetConfig = JSON.parse(readFileSync(join(UNET, 'config.json'), 'utf8')) as { in_channels: number; cross_attention_dim: number };
const BATCH = Number(args.batch);
const LATENT: [number, number, number] = [unetConfig.in_channels, Number(args.latent), Number(args.latent)];
const CONTEXT = unetConfig.cross_attention_dim;

/**
 * Median wall and CPU times (ms) of several functions measured in turn within each round, so that a
 * machine whose load changes (shared cores) slows all of them alike and their ratios stay meaningful.
 */
async function interleavedMedians(fns: (() => Promise<unknown>)[]): Promise<{ wall: number; cpu: number }[]> {
  for (const fn of fns) await fn(); // warm-up: first runs allocate
  const times = fns.map(() => ({ wall: [] as number[], cpu: [] as number[] }));
  for (let r = 0; r < REPEATS; r++) {
    for (const [i, fn] of fns.entries()) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await fn();
      times[i].wall.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      times[i].cpu.push((c.user + c.system) / 1000);
    }
  }
  const median = (ts: number[]) => ts.sort((a, b) => a - b)[Math.floor(ts.length / 2)];
  return times.map(({ wall, cpu }) => ({ wall: median(wall), cpu: median(cpu) }));
}

const schedulerConfig = JSON.parse(readFileSync(join(TINY_SD, 'scheduler', 'scheduler_config.json'), 'utf8'));
const alphasCumprod = createScheduler('ddpm', schedulerConfig).alphasCumprod;
const rng = new Generator(0);
const latentSize = LATENT[0] * LATENT[1] * LATENT[2];
const shape = [BATCH, ...LATENT] as [number, number, number, number];
const { timesteps, noise } = drawNoising(rng, BATCH, latentSize, 1000);
const feeds: Feeds = {
  ...diffusionFeeds(alphasCumprod, rng.randn(BATCH * latentSize), shape, noise, timesteps),
  encoder_hidden_states: { data: rng.randn(BATCH * 77 * CONTEXT), shape: [BATCH, 77, CONTEXT] },
};

// Forward alone: the inference graph (frozen weights), as sampling runs it.
const frozen = loadUNet(UNET);
const sample = Tensor.input('sample', shape);
const t = Tensor.input('timestep', [BATCH]);
const ctx = Tensor.input('encoder_hidden_states', [BATCH, 77, CONTEXT]);
const forwardGraph = await compile({ inputs: [sample, t, ctx], outputs: { eps: frozen.forward(sample, t, ctx) } });
const forwardFeeds = { sample: feeds.latents, timestep: feeds.timestep, encoder_hidden_states: feeds.encoder_hidden_states };

// Training steps: every UNet parameter trainable, one graph per budget for kept attention P.
const steps: { budget: number; keptForward: string; weightGrad: string; step: TrainStep; optimizer: AdamW; compileMs: number }[] = [];
const budgetForms = budgetsMib.flatMap((b) => (b ? keptForwards.map((f) => [b, f] as const) : [[b, keptForwards[0]] as const]));
for (const [budget, keptForward, weightGrad] of budgetForms.flatMap(([b, f]) => weightGrads.map((w) => [b, f, w] as const))) {
  const unet = loadUNet(UNET);
  const inputs = diffusionInputs(BATCH, LATENT);
  const context = Tensor.input('encoder_hidden_states', [BATCH, 77, CONTEXT]);
  const { loss } = diffusionLoss(unet, inputs, context);
  const t0 = performance.now();
  const step = await compileTrainStep({ inputs: [...Object.values(inputs), context], loss, params: unet.parameters(), kernels: { keptBytes: budget * 2 ** 20, keptAttentionForward: keptForward, convInputGrad: args['conv-input-grad'] as 'conv', convWeightGrad: weightGrad } });
  steps.push({ budget, keptForward, weightGrad, step, optimizer: new AdamW(step.params, { lr: 1e-5 }), compileMs: performance.now() - t0 });
}
// With --grounding: the first graph's kernels again, plus the grounding loss (random masks, the first 4 tokens grounded).
const groundingWeight = args.grounding === undefined ? undefined : Number(args.grounding);
if (groundingWeight !== undefined) {
  if (!(groundingWeight > 0)) throw new Error(`--grounding: a positive weight, got "${args.grounding}"`);
  const [first] = steps;
  const unet = loadUNet(UNET);
  const inputs = diffusionInputs(BATCH, LATENT);
  const context = Tensor.input('encoder_hidden_states', [BATCH, 77, CONTEXT]);
  const grounding = groundingLoss(BATCH, 77);
  const { loss } = diffusionLoss(unet, inputs, context, 'epsilon', { attentionHook: grounding.hook });
  const t0 = performance.now();
  const step = await compileTrainStep({
    inputs: [...Object.values(inputs), context, grounding.tokens, ...grounding.masks().map((m) => m.input)],
    loss: add(loss, mul(grounding.loss(), groundingWeight)),
    params: unet.parameters(),
    kernels: { keptBytes: first.budget * 2 ** 20, keptAttentionForward: first.keptForward as KernelForms['keptAttentionForward'], convInputGrad: args['conv-input-grad'] as 'conv', convWeightGrad: first.weightGrad as KernelForms['convWeightGrad'] },
  });
  const tokens = new Float32Array(BATCH * 77);
  for (let b = 0; b < BATCH; b++) for (let k = 1; k <= 4; k++) tokens[b * 77 + k] = 0.25;
  feeds.grounded_tokens = { data: tokens, shape: [BATCH, 77] };
  for (const m of grounding.masks()) feeds[m.name] = { data: rng.rand(BATCH * m.height * m.width), shape: [BATCH, m.height * m.width] };
  steps.push({ budget: first.budget, keptForward: first.keptForward, weightGrad: `${first.weightGrad}, with grounding ${groundingWeight}`, step, optimizer: new AdamW(step.params, { lr: 1e-5 }), compileMs: performance.now() - t0 });
}
let optimiserMs = 0;
const [forward, ...measured] = await interleavedMedians([
  () => forwardGraph.run(forwardFeeds),
  ...steps.map(({ step, optimizer }) => async () => {
    const out = await step.run(feeds);
    const t1 = performance.now();
    optimizer.step(out.grads);
    optimiserMs = performance.now() - t1;
  }),
]);
const count = steps[0].step.params.reduce((s, p) => s + p.size, 0);

const ms = (x: { wall: number; cpu: number }) => `${x.wall.toFixed(1)} ms wall, ${x.cpu.toFixed(1)} ms CPU`;
console.log(`${args.unet ? `UNet ${args.unet}` : 'tiny fixture UNet'} (${(count / 1e6).toFixed(2)}M parameters), batch ${BATCH}, latents ${LATENT.join('×')}, median of ${REPEATS}, interleaved, attention score gradient ${attentionGradForm.form}, conv input gradient ${args['conv-input-grad']}`);
console.log(`  forward alone (inference graph)        ${ms(forward)}`);
for (const [i, { budget, keptForward, weightGrad, compileMs }] of steps.entries()) {
  const m = measured[i];
  console.log(`  training step incl. AdamW, kept P ≤ ${budget} MiB${budget ? ` (${keptForward})` : ''}, conv weight gradient ${weightGrad}: ${ms(m)}`);
  console.log(`    ratio step / forward                 ${(m.wall / forward.wall).toFixed(2)}× wall, ${(m.cpu / forward.cpu).toFixed(2)}× CPU  (target ≤ 3×)`);
  console.log(`    compile (trace + grad + emit + session) ${compileMs.toFixed(0)} ms`);
}
console.log(`  AdamW update (WebAssembly, last step)  ${optimiserMs.toFixed(1)} ms`);
console.log(`  peak RSS (whole process)              ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
// Released sessions write their NURI_ORT_PROFILE files.
for (const graph of [forwardGraph, ...steps.map(({ step }) => step.graph)]) await graph.release();
