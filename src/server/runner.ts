// Runs one job with the pipelines: generate (txt2img, img2img), edit (Prompt-to-Prompt, also of an
// uploaded picture), attention (heat maps) and train. Reports each step with a small preview,
// stops between two steps once the job's signal aborts, and returns PNGs carrying
// AUTOMATIC1111's `parameters` text. Importable without a server: `nuri worker` runs it too.

import { PNG } from 'pngjs';
import { AbortError, type GenerationParameters, type RgbImage, type StepProgress, type TokenAttention, attention, edit, encodePng, formatParameters, generate, readImage } from '../index.ts';
import type { WeightDType } from '../engine/quantize.ts';
import { hasPendingGraphBuilds, optimizeCachedGraphs } from '../engine/session.ts';
import { heatMap } from '../io/heatmap.ts';
import type { SizeConditioning } from '../io/parameters.ts';
import { enlarge, toRgb8 } from '../io/image.ts';
import type { PreviewImage } from '../models/latent-preview.ts';
import { type ControlNetUnit, controlNetLabels, readControlImage } from '../pipelines/controlnet.ts';
import { type EditOptions, editParameterFields, withPictureSampler } from '../pipelines/edit.ts';
import { DEFAULTS, samplerDefaults } from '../pipelines/generate.ts';
import { MASK_BLUR, outpaintCanvas } from '../pipelines/inpaint.ts';
import { maskFromImage } from '../pipelines/masks.ts';
import type { SchedulerName } from '../schedulers/index.ts';
import { SAMPLER_LABELS } from '../schedulers/labels.ts';
import type { JobResult, JobRunner, RunnerContext } from './jobs.ts';
import type { ModelRegistry } from './models.ts';
import type { LoadedPipeline, PipelineCache, PipelineLease } from './pipeline-cache.ts';
import { runTraining } from './run-train.ts';
import type { AttentionParams, EditParams, GenerateParams, TrainParams } from './schemas.ts';

export interface RunnerOptions {
  registry: ModelRegistry;
  cache: PipelineCache;
  /** Enlarge step previews to at least this side in pixels. Default 0: latent-sized (1/8 of the image for SD), the cheapest to encode and send; clients scale them up. */
  previewSize?: number;
  /**
   * Once no job has run for this long, write the optimised graphs of models that ran for the first
   * time (a low-priority child, see optimizeCachedGraphs, for the graphs whose build fits in the
   * memory available beside the loaded models; the others at exit): a server runs for weeks, or is
   * killed, before its exit would write them. Default 2,000 ms.
   */
  graphBuildIdleMs?: number;
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new AbortError('the job was cancelled');
}

/** What one job's run holds: the options, and the pipelines it must give back when it ends. */
interface JobScope extends RunnerOptions {
  leases: PipelineLease[];
}

export function createRunner(options: RunnerOptions): JobRunner {
  const idle = idleGraphBuilder(options.graphBuildIdleMs ?? 2000);
  return async (job, ctx) => {
    idle.jobStarted();
    const scope: JobScope = { ...options, leases: [] };
    try {
      throwIfAborted(ctx.signal);
      switch (job.type) {
        case 'generate':
          return await runGenerate(job.params as GenerateParams, ctx, scope);
        case 'edit':
          return await runEdit(job.params as EditParams, ctx, scope);
        case 'attention':
          return await runAttention(job.params as AttentionParams, ctx, scope);
        case 'train':
          return await runTraining(job.id, job.params as TrainParams, ctx, options.registry);
        default:
          throw new Error(`unknown job type ${JSON.stringify(job.type)}`);
      }
    } finally {
      for (const lease of scope.leases) lease.release();
      idle.jobEnded();
    }
  };
}

/** Starts optimizeCachedGraphs once `delayMs` pass with no job running and graphs are waiting. */
function idleGraphBuilder(delayMs: number) {
  let running = 0;
  let timer: NodeJS.Timeout | undefined;
  return {
    jobStarted() {
      running++;
      clearTimeout(timer);
    },
    jobEnded() {
      if (--running > 0 || !hasPendingGraphBuilds()) return;
      // Within the memory available: the server still holds its loaded models while the child builds.
      timer = setTimeout(() => void optimizeCachedGraphs({ lowPriority: true, withinMemory: true }), delayMs);
      timer.unref(); // a process that is done anyway writes them at exit
    },
  };
}

async function load(ctx: RunnerContext, o: JobScope, spec: { model: string; loras?: GenerateParams['loras']; embeddings?: string[]; clipSkip?: number; dtype?: WeightDType; vae?: string }): Promise<LoadedPipeline> {
  ctx.progress({ step: 0, total: 0, phase: 'loading' });
  const loaded = await o.cache.acquire(spec);
  o.leases.push(loaded);
  throwIfAborted(ctx.signal);
  return loaded;
}

/**
 * Reports each step, with a preview when someone would see it: the pipeline's tiny VAE (TAESD)
 * decodes it at the picture's size when it has one, else the latent→RGB map gives a latent-sized
 * one. (The library stops the loop itself once the signal aborts.)
 */
function stepReporter(ctx: RunnerContext, o: RunnerOptions) {
  return async (p: StepProgress) => {
    const progress = { step: p.step, total: p.total, phase: 'sampling' as const, timestep: p.timestep };
    if (ctx.wantsPreview?.() === false) return ctx.progress(progress);
    const [image] = await p.decodePreview();
    ctx.progress({ ...progress, preview: previewPng(image, o.previewSize ?? 0) });
  };
}

/** A job's parameters with the steps and guidance it left out settled: its sampler's (`samplerDefaults`). */
type Settled<P> = P & { steps: number; guidance: number };

/** The sampling settings every job kind shares, with the step reporter and the job's signal. */
function samplerOptions(p: Settled<AttentionParams>, ctx: RunnerContext, o: RunnerOptions) {
  const { negativePrompt, steps, scheduler, timestepSpacing, guidance, seed, clipSkip, promptSyntax } = p;
  return { negativePrompt, steps, scheduler, timestepSpacing, guidance, seed, clipSkip, promptSyntax, signal: ctx.signal, onProgress: stepReporter(ctx, o) };
}

/** A latent preview as a small PNG, enlarged (nearest) to at least `minSide` pixels. */
export function previewPng(preview: PreviewImage, minSide: number): Buffer {
  const image = enlargeTo(preview as RgbImage, minSide);
  const png = new PNG({ width: image.width, height: image.height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = toRgb8(image);
  return PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
}

async function encodeAll(images: RgbImage[], parameters: (i: number) => string): Promise<JobResult['images']> {
  return Promise.all(images.map(async (image, i) => ({ png: await encodePng(image, { parameters: parameters(i) }), parameters: parameters(i) })));
}

/** The infotext's sampling fields; `scheduler` is the one that ran (the job's, else the model's own). */
function sampling(p: { prompt: string; negativePrompt?: string; steps: number; guidance: number; model: string; dtype: WeightDType }, scheduler: SchedulerName): GenerationParameters {
  return { prompt: p.prompt, negativePrompt: p.negativePrompt, steps: p.steps, sampler: SAMPLER_LABELS[scheduler], guidance: p.guidance, model: p.model, dtype: p.dtype };
}

async function runGenerate(params: GenerateParams, ctx: RunnerContext, o: JobScope): Promise<JobResult> {
  const { sd, personal } = await load(ctx, o, params);
  const p: Settled<GenerateParams> = { ...params, ...samplerDefaults(sd, params) };
  const { initImage, inpaint, width, height } = await paintInputs(p, ctx, sd.defaultSize);
  const strength = p.strength ?? (inpaint ? 1 : DEFAULTS.strength);
  const controlNets = await controlUnits(p, sd, ctx, o, width, height);
  const sizeConditioning = sizeConditioningOf(p);
  const result = await generate(sd, {
    prompts: new Array(p.batch).fill(personal.expandPrompt(p.prompt)),
    ...samplerOptions(p, ctx, o),
    negativePrompt: p.negativePrompt === undefined ? undefined : personal.expandPrompt(p.negativePrompt),
    eta: p.eta,
    width,
    height,
    initImage,
    strength,
    inpaint,
    controlNets,
    ...sizeConditioning,
  });
  const extra = {
    ...(p.timestepSpacing ? { 'Timestep spacing': p.timestepSpacing } : {}),
    ...(p.clipSkip ? { 'Clip skip': p.clipSkip } : {}),
    ...(p.promptSyntax === false ? { 'Prompt syntax': 'off' } : {}),
    ...(inpaint ? { 'Mask blur': inpaint.blur } : {}),
    ...(p.onlyMasked ? { 'Inpaint area': 'Only masked', 'Masked area padding': p.onlyMasked.padding } : {}),
    ...vaeLabel(p),
    ...personalLabels(personal),
    ...controlNetLabels(p.controlnet),
  };
  const infotexts = result.seeds.map((seed) =>
    formatParameters({ ...sampling(p, result.scheduler), seed, width, height, denoisingStrength: initImage ? strength : undefined, sizeConditioning, extra }),
  );
  return { images: await encodeAll(result.images, (i) => infotexts[i]), artifacts: [], info: { seeds: result.seeds, infotexts, width, height, warnings: [...sd.components.warnings, ...personal.warnings, ...result.warnings] } };
}

/** The job's SDXL size conditioning in the library's order: sizes height first, the crop top first. */
function sizeConditioningOf(p: GenerateParams): SizeConditioning {
  const hw = (size: { width: number; height: number } | undefined) => size && ([size.height, size.width] as const);
  const tl = (crop: { top: number; left: number } | undefined) => crop && ([crop.top, crop.left] as const);
  return {
    originalSize: hw(p.originalSize),
    targetSize: hw(p.targetSize),
    cropTopLeft: tl(p.cropTopLeft),
    negativeOriginalSize: hw(p.negativeOriginalSize),
    negativeTargetSize: hw(p.negativeTargetSize),
    negativeCropTopLeft: tl(p.negativeCropTopLeft),
  };
}

/** Pictures kept at their own size (only-masked inpainting) are decoded whole, as floats: up to this many pixels (an 8K frame is 33 million). */
export const KEPT_SIZE_MAX_PIXELS = 40_000_000;

/**
 * The picture to start from, read at the job's size (at its own with onlyMasked, the mask then read
 * at that), and the mask (grown with the canvas when outpainting).
 */
async function paintInputs(p: GenerateParams, ctx: RunnerContext, defaultSize: number) {
  let [width, height] = [p.width ?? defaultSize, p.height ?? defaultSize];
  const keptSize = p.onlyMasked ? { maxPixels: KEPT_SIZE_MAX_PIXELS } : { width, height };
  let initImage = p.initImage === undefined ? undefined : await readImage(await ctx.readInput(p.initImage), { ...keptSize, name: `initImage ${p.initImage}` });
  const maskSize = p.onlyMasked && initImage ? { width: initImage.width, height: initImage.height } : { width, height };
  let mask = p.mask === undefined ? undefined : maskFromImage(await readImage(await ctx.readInput(p.mask), { ...maskSize, name: `mask ${p.mask}` }));
  if (p.outpaint && initImage) {
    ({ image: initImage, mask } = outpaintCanvas(initImage, p.outpaint, mask));
    [width, height] = [initImage.width, initImage.height];
  }
  const inpaint = mask && { mask, blur: p.maskBlur ?? MASK_BLUR, fill: p.inpaintFill, onlyMasked: p.onlyMasked };
  return { initImage, inpaint, width, height };
}

/** The infotext's VAE field (A1111's name for it), for a job that named its own. */
function vaeLabel(p: { vae?: string }): Record<string, string> {
  return p.vae === undefined ? {} : { VAE: p.vae };
}

/** The infotext fields that say which LoRAs and embeddings drew a picture. */
function personalLabels(personal: LoadedPipeline['personal']): Record<string, string> {
  return {
    ...(personal.loraLabels.length ? { Lora: personal.loraLabels.join(', ') } : {}),
    ...(personal.embeddings.length ? { TI: personal.embeddings.map((e) => e.token).join(', ') } : {}),
  };
}

/** The job's ControlNets, each loaded once per resident pipeline, with their control images at the output size. */
async function controlUnits(p: GenerateParams, sd: LoadedPipeline['sd'], ctx: RunnerContext, o: JobScope, width: number, height: number): Promise<ControlNetUnit[]> {
  const units: ControlNetUnit[] = [];
  for (const c of p.controlnet) {
    const model = sd.loadControlNet(o.registry.controlnet(c.model).path);
    const image = await readControlImage(await ctx.readInput(c.image), { width, height, fit: c.fit, preprocess: c.preprocess, canny: { low: c.cannyLow, high: c.cannyHigh } });
    units.push({ model, image, scale: c.weight, start: c.start, end: c.end });
  }
  return units;
}

async function runEdit(params: EditParams, ctx: RunnerContext, o: JobScope): Promise<JobResult> {
  const { sd, personal } = await load(ctx, o, params);
  const p: Settled<EditParams> = { ...params, ...samplerDefaults(sd, withPictureSampler(params)) };
  let width = p.width ?? sd.defaultSize;
  let height = p.height ?? sd.defaultSize;
  const image = p.image === undefined ? undefined : await readImage(await ctx.readInput(p.image), { width, height, name: `image ${p.image}` });
  if (image) [width, height] = [image.width, image.height];
  const options: EditOptions = {
    source: personal.expandPrompt(p.prompt),
    target: p.target === undefined ? undefined : personal.expandPrompt(p.target),
    refine: p.refine,
    crossReplace: p.crossReplace,
    selfReplace: p.selfReplace,
    reweight: p.reweight,
    reweightCarry: p.reweightCarry,
    localBlend: p.localBlend && { words: p.localBlend, threshold: p.blendThreshold },
    image,
    nullText: p.nullTextSteps > 0 && { innerSteps: p.nullTextSteps },
    ...samplerOptions(p, ctx, o),
    negativePrompt: p.negativePrompt === undefined ? undefined : personal.expandPrompt(p.negativePrompt),
    eta: p.eta,
    width,
    height,
    attentionMaps: p.attentionMaps,
    onInversionStep: (s) => ctx.progress({ step: s.phase === 'ddim' ? s.step : p.steps + s.step, total: 2 * p.steps, phase: 'inverting', loss: s.loss }),
  };
  const result = await edit(sd, options);
  const extra = { ...editParameterFields(options, result), ...(image ? { 'Null-text steps': p.nullTextSteps } : {}), ...vaeLabel(p), ...personalLabels(personal) };
  const infotexts = [p.prompt, p.target ?? p.prompt].map((prompt) => formatParameters({ ...sampling(p, result.scheduler), prompt, seed: result.seed, width, height, extra }));
  // With attentionMaps: the edit's heat maps follow the two pictures, as images 2, 3, ….
  const maps = result.attention && { ...heatMaps(result.attention, { width, height }, 2), mapWidth: result.attention.mapWidth, mapHeight: result.attention.mapHeight };
  return {
    images: await encodeAll([...result.images, ...(maps?.maps ?? [])], (i) => infotexts[Math.min(i, 1)]),
    artifacts: [],
    info: {
      seed: result.seed,
      seeds: [result.seed, result.seed],
      infotexts,
      kind: result.plan.kind,
      source: result.plan.source,
      target: result.plan.target,
      width,
      height,
      ...(maps ? { tokens: maps.tokens, mapWidth: maps.mapWidth, mapHeight: maps.mapHeight } : {}),
    },
  };
}

async function runAttention(params: AttentionParams, ctx: RunnerContext, o: JobScope): Promise<JobResult> {
  const { sd } = await load(ctx, o, params);
  const p: Settled<AttentionParams> = { ...params, ...samplerDefaults(sd, params) };
  const width = p.width ?? sd.defaultSize;
  const height = p.height ?? sd.defaultSize;
  const result = await attention(sd, {
    prompt: p.prompt,
    ...samplerOptions(p, ctx, o),
    width,
    height,
  });
  const infotext = formatParameters({ ...sampling(p, result.scheduler), seed: result.seed, width, height, extra: vaeLabel(p) });
  const { maps, tokens } = heatMaps(result, { width, height }, 1);
  return {
    images: await encodeAll([result.image, ...maps], () => infotext),
    artifacts: [],
    info: { seed: result.seed, seeds: [result.seed], infotexts: [infotext], tokens, mapWidth: result.mapWidth, mapHeight: result.mapHeight, width, height },
  };
}

/** One coloured heat map per token at the picture's size; `tokens` say which result image is whose. */
function heatMaps(a: { mapHeight: number; mapWidth: number; tokens: TokenAttention[] }, size: { width: number; height: number }, firstImage: number) {
  const maps = a.tokens.map((t) => heatMap(t.map, a.mapHeight, a.mapWidth, { size }));
  const tokens = a.tokens.map((t, i) => ({ token: t.token, position: t.position, image: firstImage + i }));
  return { maps, tokens };
}

/** Enlarges tiny pictures for display (e.g. the default model's 64 px), by a whole factor. */
export function enlargeTo(image: RgbImage, minSide: number): RgbImage {
  return enlarge(image, Math.max(1, Math.ceil(minSide / Math.min(image.width, image.height))));
}
