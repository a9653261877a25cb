// One size of `npm run bench:sd -- --sdxl`: an SDXL UNet step with guidance (batch 2) in a child
// process of its own, so that its peak RSS is that run's alone. The UNet is the pipeline's own graph
// (compileUNet) fed as a guided SDXL step feeds it: sample [2, 4, h, w], timestep [2], context
// [2, 77, 2048] (both towers' states), text_embeds [2, 1280] (the pooled vector) and time_ids
// [2, 6] (original size, crop, target size). Prints one `@@result {json}` line for the parent.
//
//   npx tsx bench/sdxl-measure.ts --unet DIR --size 1024 [--steps 1] [--dtype fp32|q8] [--cache DIR] [--save-outputs PREFIX]

import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Generator, WEIGHT_DTYPES, type WeightDType } from '../src/engine/index.ts';
import { loadUNet } from '../src/models/checkpoint/components.ts';
import { compileUNet } from '../src/pipelines/stable-diffusion.ts';
import { type UNetSteps, progress, timeUNetSteps } from './sd-measure.ts';
import { peakRss, printResult, seconds } from './sd-report.ts';

/** SDXL's token count per tower: both towers' states are concatenated along the width. */
const TOKENS = 77;

export interface UNetStepResult extends UNetSteps {
  size: number;
  dtype: WeightDType;
  /** Reading the config and binding the weights' headers; then tracing, emitting and opening the session. */
  loadS: number;
  sessionS: number;
  peakRssBytes: number;
}

export interface UNetStepOptions {
  size: number;
  steps: number;
  dtype: WeightDType;
  cacheDir?: string;
  /** Writes the warm-up step's noise prediction to PREFIX.unet.f32 (raw float32), for comparing dtypes. */
  saveOutputs?: string;
}

export async function measureUNetStep(unetDir: string, { size, steps, dtype, cacheDir, saveOutputs }: UNetStepOptions): Promise<UNetStepResult> {
  const [unet, loadS] = await seconds(() => loadUNet(unetDir));
  const { in_channels: channels, cross_attention_dim: [width], addition_time_embed_dim: timeDim, projection_class_embeddings_input_dim: addedDim } = unet.config;
  if (!unet.add_embedding || !timeDim || !addedDim) throw new Error(`${unetDir}: not an SDXL UNet (no text_time added conditions)`);
  const [graph, sessionS] = await seconds(() => compileUNet(unet, [TOKENS, width], { cacheDir, dtype }));
  progress(`SDXL ${size}² ${dtype}: UNet session in ${sessionS.toFixed(1)} s`);
  const f = size / 8;
  const rng = new Generator(0);
  const pooled = addedDim - 6 * timeDim;
  const timeIds = new Float32Array(2 * 6);
  for (let b = 0; b < 2; b++) timeIds.set([size, size, 0, 0, size, size], 6 * b);
  const feeds = {
    sample: { data: rng.randn(2 * channels * f * f), shape: [2, channels, f, f] },
    encoder_hidden_states: { data: rng.randn(2 * TOKENS * width), shape: [2, TOKENS, width] },
    text_embeds: { data: rng.randn(2 * pooled), shape: [2, pooled] },
    time_ids: { data: timeIds, shape: [2, 6] },
  };
  const timed = await timeUNetSteps(steps, `SDXL ${size}² ${dtype}`, (t) => graph.run({ ...feeds, timestep: { data: new Float32Array(2).fill(t), shape: [2] } }), (out) => {
    if (saveOutputs) writeFileSync(`${saveOutputs}.unet.f32`, out.noise_pred.data as Float32Array);
  });
  await graph.release();
  return { size, dtype, loadS, sessionS, ...timed, peakRssBytes: peakRss() };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      unet: { type: 'string' },
      size: { type: 'string', default: '1024' },
      steps: { type: 'string', default: '1' },
      dtype: { type: 'string', default: 'fp32' },
      cache: { type: 'string' },
      'save-outputs': { type: 'string' },
    },
  });
  if (!values.unet) throw new Error('--unet DIR is required');
  if (!WEIGHT_DTYPES.includes(values.dtype as WeightDType)) throw new Error(`--dtype: expected one of ${WEIGHT_DTYPES.join(', ')}`);
  const options = { size: Number(values.size), steps: Number(values.steps), dtype: values.dtype as WeightDType, cacheDir: values.cache ?? join(values.unet, '..', '..', 'graphs'), saveOutputs: values['save-outputs'] };
  printResult(await measureUNetStep(values.unet, options));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
