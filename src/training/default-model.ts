// The in-process steps of the default model's recipe (scripts/train-default.ts runs them between
// the `nuri train` stages): measuring the trained VAE's latents, laying out the pipeline the UNet
// is trained in, and assembling the shipped folder (models/default) in half precision.
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Generator, SafetensorsFile } from '../engine/index.ts';
import { loadEmojiDataset } from '../data/emoji-dataset.ts';
import { parseEmojiSource } from '../data/emoji-source.ts';
import type { ModelDefaults } from '../models/load.ts';
import { IMAGE_ENCODER, writeImageEncoder } from '../models/pipeline-clip.ts';
import { UNet2DConditionModel } from '../models/unet.ts';
import { parseUNetConfig } from '../models/checkpoint/unet-config.ts';
import { VaeRunner } from '../models/vae-runner.ts';
import { loadVae } from '../models/checkpoint/components.ts';
import { WEIGHTS_FILE, writeComponent } from './export.ts';
import { copyAsHalfPrecision } from './half-precision.ts';
import { reconstructionQuality } from './vae-quality.ts';

type Json = Record<string, unknown>;

const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as Json;
const writeJson = (path: string, value: unknown) => writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);

export interface LatentStats {
  /** 1 / std of sampled training latents, as Stable Diffusion chose 0.18215 for its VAE. */
  scalingFactor: number;
  latentMean: number;
  latentStd: number;
  /** Mean reconstructions of the held-out emoji (never trained on). */
  heldOutPsnr: number;
  heldOutImages: number;
}

/**
 * The trained VAE's latent scale over the training images (z = mean + std·ε, ε seeded) and its
 * reconstruction quality on the held-out split of the same emoji source.
 */
export async function measureLatents(vaeDir: string, images: string, resolution: number): Promise<LatentStats> {
  const vae = loadVae(vaeDir);
  const source = parseEmojiSource(images);
  const data = await loadEmojiDataset({ ...source, size: resolution });
  const heldOut = await loadEmojiDataset({ ...source, size: resolution, split: 'heldout' });
  const runner = new VaeRunner(vae);
  const rng = new Generator(0);
  let sum = 0;
  let squares = 0;
  let count = 0;
  for (let start = 0; start < data.length; start += 64) {
    const indices = Array.from({ length: Math.min(64, data.length - start) }, (_, i) => start + i);
    const { pixels, shape } = data.batch(indices);
    const { mean, std } = await runner.encodeImage(pixels, shape);
    const eps = rng.randn(mean.length);
    for (let i = 0; i < mean.length; i++) {
      const z = mean[i] + std[i] * eps[i];
      sum += z;
      squares += z * z;
    }
    count += mean.length;
  }
  const latentMean = sum / count;
  const latentStd = Math.sqrt(squares / count - latentMean * latentMean);
  const quality = await reconstructionQuality(vae, heldOut);
  return { scalingFactor: 1 / latentStd, latentMean, latentStd, heldOutPsnr: quality.psnr, heldOutImages: quality.images };
}

function copyFolder(source: string, target: string, skip: ReadonlySet<string> = new Set()): void {
  mkdirSync(target, { recursive: true });
  for (const name of readdirSync(source)) {
    if (skip.has(name)) continue;
    const from = join(source, name);
    if (statSync(from).isDirectory()) copyFolder(from, join(target, name));
    else copyFileSync(from, join(target, name));
  }
}

/** model_index.json of a StableDiffusionPipeline (optionally with a CLIP image tower). */
function modelIndex(imageEncoder: boolean): Json {
  return {
    _class_name: 'StableDiffusionPipeline',
    _diffusers_version: '0.27.2',
    feature_extractor: [null, null],
    image_encoder: imageEncoder ? ['transformers', 'CLIPVisionModelWithProjection'] : [null, null],
    requires_safety_checker: false,
    safety_checker: [null, null],
    scheduler: ['diffusers', 'DDIMScheduler'],
    text_encoder: ['transformers', 'CLIPTextModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'UNet2DConditionModel'],
    vae: ['diffusers', 'AutoencoderKL'],
  };
}

export interface BasePipelineOptions {
  /** The trained VAE folder (config.json + weights). */
  vae: string;
  scalingFactor: number;
  /** `nuri train clip`'s output: text_encoder/ and tokenizer/ inside it. */
  clip: string;
  unetConfig: string;
  scheduler: string;
  out: string;
  /** Seed of the fresh UNet's initial weights. */
  seed: number;
  /** A trained UNet's weights (a .safetensors file) to start from instead; see startFromTrained. */
  unetFrom?: string;
}

/**
 * Starts `unet` from a trained UNet's weights (a component's file, or a training checkpoint's, which
 * stores each tensor flat): every tensor there must be in `unet` with as many values in the same
 * shape. What only `unet` has keeps its fresh weights, except that the pooled caption
 * (addition_embed_type "text") starts as a no-op, so the new UNet first draws what the trained one
 * drew. Any other part the trained one lacks is refused, since it would change the drawing at once.
 */
export function startFromTrained(unet: UNet2DConditionModel, weightsFile: string): void {
  if (!existsSync(weightsFile)) throw new Error(`unetFrom: no such weights file: ${weightsFile}`);
  const file = SafetensorsFile.open(weightsFile);
  try {
    const params = new Map(unet.parameters().map((p) => [p.name, p]));
    const unknown = file.names().filter((name) => !params.has(name));
    if (unknown.length) throw new Error(`unetFrom ${weightsFile}: ${unknown.length} tensors the UNet of unet.json does not have, e.g. ${unknown[0]}`);
    for (const name of file.names()) {
      const p = params.get(name)!;
      const stored = file.entry(name).shape;
      const fits = stored.join() === p.shape.join() || (stored.length === 1 && stored[0] === p.size);
      if (!fits) throw new Error(`unetFrom ${weightsFile}: ${name} is [${stored.join(', ')}], the UNet of unet.json has [${p.shape.join(', ')}]`);
      p.setValue(file.readFloat32(name));
    }
    const fresh = [...params.keys()].filter((name) => !file.has(name));
    const pooling = unet.text_pool_embedding;
    const other = fresh.filter((name) => !pooling?.parameters().some((p) => p.name === name));
    if (other.length) throw new Error(`unetFrom ${weightsFile}: lacks ${other.length} tensors of the UNet of unet.json, e.g. ${other[0]}; only the pooled caption (add_embedding.*) may be new`);
    if (fresh.length) pooling!.startAsNoOp();
  } finally {
    file.close();
  }
}

/** The pipeline the UNet stage trains in: trained VAE and text encoder, a freshly initialised UNet (or a trained one, `unetFrom`). */
export function writeBasePipeline(o: BasePipelineOptions): void {
  rmSync(o.out, { recursive: true, force: true });
  mkdirSync(o.out, { recursive: true });
  copyFolder(join(o.clip, 'text_encoder'), join(o.out, 'text_encoder'));
  copyFolder(join(o.clip, 'tokenizer'), join(o.out, 'tokenizer'));
  mkdirSync(join(o.out, 'scheduler'), { recursive: true });
  copyFileSync(o.scheduler, join(o.out, 'scheduler', 'scheduler_config.json'));
  mkdirSync(join(o.out, 'vae'), { recursive: true });
  copyFileSync(join(o.vae, WEIGHTS_FILE.diffusers), join(o.out, 'vae', WEIGHTS_FILE.diffusers));
  writeJson(join(o.out, 'vae', 'config.json'), { ...readJson(join(o.vae, 'config.json')), scaling_factor: Number(o.scalingFactor.toPrecision(6)) });
  const unetConfig = readJson(o.unetConfig);
  const unet = new UNet2DConditionModel(parseUNetConfig(unetConfig));
  unet.init(new Generator(o.seed));
  if (o.unetFrom) startFromTrained(unet, o.unetFrom);
  writeComponent(join(o.out, 'unet'), { config: unetConfig, params: unet.parameters(), weightsFile: WEIGHTS_FILE.diffusers });
  writeJson(join(o.out, 'model_index.json'), modelIndex(false));
}

export interface AssembleOptions {
  /** `nuri train unet`'s output pipeline. */
  unetPipeline: string;
  /** `nuri train clip`'s output (its CLIPModel gives image_encoder/). */
  clip: string;
  /** Scratch folder for the float32 assembly. */
  staging: string;
  out: string;
  /** Wall seconds per stage, for the model card. */
  costs: Record<string, number>;
  /** Side of the images it draws, for the model card. */
  resolution: number;
  /** Sampling defaults measured to suit it, written as its nuri.json. */
  defaults?: ModelDefaults;
}

/** The shipped model: the trained pipeline plus the CLIP image tower, in fp16, with a model card. */
export function assembleDefaultModel(o: AssembleOptions): void {
  rmSync(o.staging, { recursive: true, force: true });
  copyFolder(o.unetPipeline, o.staging, new Set(['checkpoints', 'milestones', 'validation']));
  writeImageEncoder(o.clip, o.staging);
  writeJson(join(o.staging, 'model_index.json'), modelIndex(true));
  writeFileSync(join(o.staging, 'README.md'), modelCard(o.costs, o.resolution, o.defaults));
  if (o.defaults) writeJson(join(o.staging, 'nuri.json'), { defaults: o.defaults });
  const temporary = `${o.out}.tmp-${process.pid}`;
  rmSync(temporary, { recursive: true, force: true });
  copyAsHalfPrecision(o.staging, temporary);
  if (existsSync(o.out)) rmSync(o.out, { recursive: true });
  renameSync(temporary, o.out);
}

function minutes(seconds: number | undefined): string {
  return seconds === undefined ? '–' : `${Math.round(seconds / 60)} min`;
}

function describeDefaults(d: ModelDefaults): string {
  return [
    d.steps !== undefined && `${d.steps} steps`,
    d.guidance !== undefined && `guidance ${d.guidance}`,
    d.reweightCarry !== undefined && `Prompt-to-Prompt re-weights ${d.reweightCarry ? 'carried into the words after the word' : 'on the word alone'} (reweightCarry)`,
  ]
    .filter(Boolean)
    .join(', ');
}

/** The cost-table entry of the trained UNet a recipe's UNet started from (training.json's `unetFrom`). */
export const STARTED_FROM_COST = 'unet it started from';

/** A finished run's whole UNet time: its own and that of the UNet it started from, down the chain. */
export function unetLineageSeconds(costs: Record<string, number>): number {
  return (costs.unet ?? 0) + (costs[STARTED_FROM_COST] ?? 0);
}

export function modelCard(costs: Record<string, number>, resolution: number, defaults: ModelDefaults | undefined): string {
  const total = Object.values(costs).reduce((a, b) => a + b, 0);
  const unet = costs[STARTED_FROM_COST] === undefined ? minutes(costs.unet) : `${minutes(unetLineageSeconds(costs))} (${minutes(costs[STARTED_FROM_COST])} of them the UNet it started from)`;
  return `# Nuri default model

A small text-to-image latent diffusion model in the diffusers layout, trained by Nuri's own
training code (\`npm run train:default\`, scripts/train-default.ts, configs in recipes/) on
a few thousand emoji images with their names as captions. It is a demonstration that every code
path works without a download, not a general image model: it draws ${resolution}×${resolution} emoji-like pictures.

Components: \`vae/\` (AutoencoderKL, 4× downsampling, 4 latent channels), \`text_encoder/\` +
\`tokenizer/\` (CLIP text tower over the real CLIP BPE vocabulary), \`unet/\`
(UNet2DConditionModel with cross-attention), \`scheduler/\` (DDIM), and \`${IMAGE_ENCODER}/\`: the
CLIP image tower trained with the text tower, with both projections (src/models/pipeline-clip.ts
loads the pair as one CLIPModel). Weights are float16 safetensors.${defaults ? ` \`nuri.json\` gives the defaults it was measured at: ${describeDefaults(defaults)}.` : ''}

Training wall time on a 2-core CPU machine shared with other work: VAE ${minutes(costs.vae)},
CLIP ${minutes(costs.clip)}, UNet ${unet}; ${minutes(total)} in total, counting work
discarded on the way (stages re-run after a change to an earlier one).

## Data and licences

Trained on \`emoji-datasource-twitter\` and \`emoji-datasource-google\` 16.0.0 from npm (see
docs/DATA.md): Twemoji graphics by Twitter, Inc. and other contributors, licensed under CC-BY 4.0
(https://creativecommons.org/licenses/by/4.0/); Noto Emoji by Google LLC, Apache License 2.0. The
catalogue of names is iamcal/emoji-data (MIT). Images made with this model derive from those
graphics: credit "Twemoji graphics by Twitter, Inc. and other contributors, CC-BY 4.0".
`;
}
