// POST /sdapi/v1/txt2img and /img2img. Synchronous as in A1111: the request is turned into one
// native `generate` job per n_iter batch, queued, waited for, and answered with base64 PNGs, the
// echoed request and A1111's `info` JSON string. A client that hangs up cancels its jobs.

import type { FastifyReply } from 'fastify';
// INPAINT_FILLS is in A1111's order: inpainting_fill 0–3 index it.
import { INPAINT_FILLS } from '../../pipelines/inpaint.ts';
import { type JobQueue, type JobRecord, QueueFullError } from '../jobs.ts';
import { A1111Activity, type A1111Request, jobTimestamp } from './activity.ts';
import { EmbeddingIndex, type SdapiModelRegistry, sdVaeItem } from './catalog.ts';
import { controlNetLabels } from '../../pipelines/controlnet.ts';
import { type NativeControlNet, controlNetScript, controlNetUnits } from './controlnet.ts';
import { SdapiError, parseBody } from './errors.ts';
import { decodeBase64Image, prepareInitImage } from './images.ts';
import type { SdapiStore } from './index.ts';
import type { GenerateValidator } from './native.ts';
import type { SdapiOptions } from './options.ts';
import { type Img2ImgRequest, type Txt2ImgRequest, coerceNumbers, img2imgRequest, txt2imgRequest, unsupportedFieldNotes } from './request.ts';
import { type GenerationPlan, planGeneration } from './translate.ts';

export interface GenerationDeps {
  queue: JobQueue;
  models: SdapiModelRegistry;
  store: SdapiStore;
  validate: GenerateValidator;
  options: SdapiOptions;
  activity: A1111Activity;
  embeddings: EmbeddingIndex;
}

type Kind = 'txt2img' | 'img2img';

export async function generateA1111(kind: Kind, body: unknown, reply: FastifyReply, deps: GenerationDeps): Promise<unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw SdapiError.invalid([], 'must be a JSON object', 'type_error.dict');
  const schema = kind === 'txt2img' ? txt2imgRequest : img2imgRequest;
  const request: Txt2ImgRequest | Img2ImgRequest = parseBody(schema, coerceNumbers(body as Record<string, unknown>, schema));
  const notes = unsupportedFieldNotes(body as Record<string, unknown>, schema);

  const [models, loras, embeddingFiles, vaes] = await Promise.all([deps.models.models(), deps.models.loras(), deps.models.embeddings(), deps.models.vaes?.() ?? []]);
  const embeddings = deps.embeddings.read(embeddingFiles).loaded;
  const plan = planGeneration(request, { models, vaes, loras, embeddings, options: deps.options });
  notes.push(...plan.notes);
  const controlnet = controlNetScript(request.alwayson_scripts);
  if (controlnet) plan.params.controlnet = await controlNetUnits(controlnet, (await deps.models.controlnets?.()) ?? [], (png) => deps.store.saveUpload(png), notes);
  // Checked before the init image is stored; each batch's params are checked again as submitted.
  deps.validate({ ...plan.params, seed: plan.seed });
  if ('init_images' in request) await addInitImage(request, plan, notes, deps);

  const tracked = deps.activity.begin(kind);
  const hangUp = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableFinished) hangUp.abort();
  };
  reply.raw.on('close', onClose);
  try {
    await submitAll(plan, tracked, deps);
    hangUp.signal.addEventListener('abort', () => void Promise.all(tracked.jobIds.map((id) => deps.queue.cancel(id))), { once: true });
    if (hangUp.signal.aborted) await Promise.all(tracked.jobIds.map((id) => deps.queue.cancel(id)));
    const records: JobRecord[] = [];
    for (const id of tracked.jobIds) records.push(await deps.queue.wait(id, hangUp.signal));
    return await answer(kind, request, plan, records, tracked, notes, deps);
  } finally {
    reply.raw.off('close', onClose);
    deps.activity.end(tracked);
  }
}

/**
 * A1111's inpaint_full_res ("Only masked", its API's default): with a mask, the picture keeps its
 * size. Not with ControlNet units (their control images would have to be cut out alike): those
 * inpaint the whole picture, with a note.
 */
const onlyMasked = (request: Img2ImgRequest, plan: GenerationPlan) =>
  request.mask !== null && request.mask !== undefined && request.inpaint_full_res !== false && request.inpaint_full_res !== 0 && plan.params.controlnet === undefined;

async function addInitImage(request: Img2ImgRequest, plan: GenerationPlan, notes: string[], deps: GenerationDeps): Promise<void> {
  const bytes = decodeBase64Image(request.init_images[0], ['init_images', 0]);
  const png = await prepareInitImage(bytes, ['init_images', 0], request, request.resize_mode, { ownSize: onlyMasked(request, plan) });
  plan.params.initImage = await deps.store.saveUpload(png);
  plan.params.strength = request.denoising_strength;
  if (request.init_images.length > 1) notes.push(`only init_images[0] is used; ${request.init_images.length - 1} more were ignored`);
  if (request.resize_mode === 3) notes.push('resize_mode 3 (latent upscale) is not supported; the image was resized in pixels');
  if (request.mask) await addMask(request, plan, notes, deps);
}

/** A1111's inpainting fields → the native mask, maskBlur and inpaintFill. */
async function addMask(request: Img2ImgRequest, plan: GenerationPlan, notes: string[], deps: GenerationDeps): Promise<void> {
  const fill = INPAINT_FILLS[request.inpainting_fill];
  if (fill === undefined) throw SdapiError.invalid(['inpainting_fill'], 'must be 0 (fill), 1 (original), 2 (latent noise) or 3 (latent nothing)');
  const bytes = decodeBase64Image(request.mask!, ['mask']);
  const png = await prepareInitImage(bytes, ['mask'], request, request.resize_mode, { invert: request.inpainting_mask_invert === 1, ownSize: onlyMasked(request, plan) });
  plan.params.mask = await deps.store.saveUpload(png);
  // A1111 blurs along x and y separately; Nuri's blur is one σ for both.
  const [bx, by] = request.mask_blur === null ? [request.mask_blur_x, request.mask_blur_y] : [request.mask_blur, request.mask_blur];
  plan.params.maskBlur = Math.max(bx, by);
  if (bx !== by) notes.push(`mask_blur_x ${bx} and mask_blur_y ${by} differ; the mask was blurred by ${Math.max(bx, by)} along both`);
  plan.params.inpaintFill = fill;
  if (onlyMasked(request, plan)) plan.params.onlyMasked = { padding: Math.max(0, request.inpaint_full_res_padding) };
  else if (request.inpaint_full_res !== false && request.inpaint_full_res !== 0) notes.push('inpaint_full_res (only masked) with ControlNet is not supported; the whole picture was inpainted at its size');
  if (!request.mask_round) notes.push('mask_round false is not supported; the mask is binarised at ½ for the UNet');
}


/** Queues every batch up front, so a full queue refuses the whole request rather than half of it. */
async function submitAll(plan: GenerationPlan, tracked: A1111Request, { queue, validate }: GenerationDeps): Promise<void> {
  try {
    for (let k = 0; k < plan.iterations; k++) {
      const job = await queue.submit('generate', validate({ ...plan.params, seed: plan.seed + k * plan.batchSize }));
      tracked.jobIds.push(job.id);
    }
  } catch (error) {
    await Promise.all(tracked.jobIds.map((id) => queue.cancel(id)));
    if (error instanceof QueueFullError) throw new SdapiError(429, error.message, { 'Retry-After': String(error.retryAfterSeconds) });
    throw error;
  }
}

/** A finished generate job's infotexts, one per image, as the runner recorded them. */
function recordInfotexts(record: JobRecord): string[] {
  const infotexts = record.info.infotexts;
  if (!Array.isArray(infotexts) || infotexts.length !== record.images.length || !infotexts.every((t) => typeof t === 'string')) {
    throw new SdapiError(500, `job ${record.id} finished without an infotext per image`);
  }
  return infotexts;
}

async function answer(kind: Kind, request: Txt2ImgRequest | Img2ImgRequest, plan: GenerationPlan, records: JobRecord[], tracked: A1111Request, notes: string[], deps: GenerationDeps) {
  const failed = records.find((r) => r.status === 'failed');
  if (failed) throw new SdapiError(500, `generation failed: ${failed.error ?? 'unknown error'}`);
  const cancelled = records.filter((r) => r.status === 'cancelled').length;
  if (cancelled) notes.push(`interrupted: ${cancelled} of ${records.length} batch(es) were cancelled before they finished`);

  // The records hold each image's infotext and the size made; the PNGs are read only to be sent.
  const completed = records.filter((r) => r.status === 'completed');
  const infotexts = completed.flatMap(recordInfotexts);
  const made = completed[0]?.info as { width?: number; height?: number } | undefined;
  const size = made?.width && made.height ? { width: made.width, height: made.height } : { width: request.width, height: request.height };
  const pngs = request.send_images ? await Promise.all(completed.flatMap((r) => r.images).map((name) => deps.store.readInput(name))) : [];
  const count = plan.batchSize * plan.iterations;
  const seeds = Array.from({ length: count }, (_, i) => plan.seed + i);
  const info = {
    prompt: request.prompt,
    all_prompts: new Array(count).fill(request.prompt),
    negative_prompt: request.negative_prompt,
    all_negative_prompts: new Array(count).fill(request.negative_prompt),
    seed: plan.seed,
    all_seeds: seeds,
    subseed: plan.subseed,
    all_subseeds: seeds.map((_, i) => plan.subseed + i),
    subseed_strength: request.subseed_strength,
    width: size.width,
    height: size.height,
    sampler_name: plan.samplerLabel,
    cfg_scale: request.cfg_scale,
    steps: request.steps,
    batch_size: plan.batchSize,
    restore_faces: false,
    face_restoration_model: null,
    sd_model_name: plan.model.name,
    sd_model_hash: null,
    sd_vae_name: plan.vae ? sdVaeItem(plan.vae).model_name : null,
    sd_vae_hash: null,
    seed_resize_from_w: request.seed_resize_from_w,
    seed_resize_from_h: request.seed_resize_from_h,
    denoising_strength: kind === 'img2img' ? request.denoising_strength : null,
    extra_generation_params: {
      ...(plan.params.loras ? { Lora: (plan.params.loras as { name: string; weight: number }[]).map((l) => `${l.name}:${l.weight}`).join(', ') } : {}),
      ...controlNetLabels(plan.params.controlnet as NativeControlNet[] | undefined),
    },
    index_of_first_image: 0,
    infotexts,
    styles: request.styles,
    job_timestamp: jobTimestamp(new Date(tracked.startedAt)),
    clip_skip: plan.clipSkip,
    is_using_inpainting_conditioning: false,
    version: 'nuri',
    notes,
  };
  // A1111 echoes the request with its defaults filled in, without the init images unless asked.
  const parameters: Record<string, unknown> = { ...request, width: size.width, height: size.height, sampler_name: request.sampler_name ?? plan.samplerLabel };
  // As A1111: without include_init_images the echo leaves out the pictures sent (init images and mask).
  if ('init_images' in request && !request.include_init_images) Object.assign(parameters, { init_images: null, mask: null });
  return {
    images: pngs.map((png) => png.toString('base64')),
    parameters,
    info: JSON.stringify(info),
  };
}
