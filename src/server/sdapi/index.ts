// AUTOMATIC1111's web API (/sdapi/v1) over Nuri's job queue, so that clients written for A1111 —
// chat front ends, painting-tool plugins, scripts — work unchanged. Field names, types and answer
// shapes follow A1111's modules/api/models.py; what Nuri cannot do is accepted and noted in `info`.

import type { FastifyInstance, FastifyReply } from 'fastify';
import { parsePngText } from '../../io/png.ts';
import { parseParameters, settingsFields } from '../../io/parameters.ts';
import type { JobQueue } from '../jobs.ts';
import type { ServerLimits } from '../schemas.ts';
import { A1111Activity } from './activity.ts';
import { EmbeddingIndex, type SdapiModelRegistry, findModel, sdModelItem, sdVaeItem } from './catalog.ts';
import { SdapiError, parseBody, sendError } from './errors.ts';
import { generateA1111 } from './generation.ts';
import { decodeBase64Image } from './images.ts';
import { generateValidator } from './native.ts';
import { SdapiOptions } from './options.ts';
import { A1111_SAMPLERS, A1111_SCHEDULES } from './samplers.ts';
import { z } from 'zod';
import { CONTROL_PREPROCESSORS } from '../../pipelines/controlnet.ts';

export type { SdapiModelRegistry } from './catalog.ts';

/** Where result images and uploads live: the server's JobStore fits as it is. */
export interface SdapiStore {
  /** The bytes of a result image, by a name from JobRecord.images. */
  readInput(name: string): Promise<Buffer>;
  /** Keeps an img2img init image (PNG bytes); returns the name the `initImage` param takes. */
  saveUpload(bytes: Buffer): Promise<string>;
}

export interface SdapiDeps {
  queue: JobQueue;
  models: SdapiModelRegistry;
  store: SdapiStore;
  /** The server's limits on steps, size, batch, prompt length (default: DEFAULT_LIMITS). */
  limits?: ServerLimits;
}

/** Base64 images make large bodies; A1111 sets no limit, this is a generous one. */
const IMAGE_BODY_LIMIT = 64 * 1024 * 1024;

const pngInfoRequest = z.object({ image: z.string().min(1, 'must be a base64 PNG') });

export function registerSdapi(app: FastifyInstance, deps: SdapiDeps): void {
  const options = new SdapiOptions();
  const activity = new A1111Activity(deps.queue);
  const embeddings = new EmbeddingIndex();
  const generation = { ...deps, options, activity, embeddings, validate: generateValidator(deps.limits) };
  const resolveModel = async (name: string) => findModel(await deps.models.models(), name)?.name;

  // Each handler answers SdapiErrors in A1111's shapes; anything else goes to the app's handler.
  const route = (handler: (body: unknown, reply: FastifyReply, query: Record<string, unknown>) => Promise<unknown>) => async (request: { body?: unknown; query?: unknown }, reply: FastifyReply) => {
    try {
      return await handler(request.body, reply, (request.query ?? {}) as Record<string, unknown>);
    } catch (error) {
      return sendError(reply, error);
    }
  };

  app.post('/sdapi/v1/txt2img', { bodyLimit: IMAGE_BODY_LIMIT }, route((body, reply) => generateA1111('txt2img', body, reply, generation)));
  app.post('/sdapi/v1/img2img', { bodyLimit: IMAGE_BODY_LIMIT }, route((body, reply) => generateA1111('img2img', body, reply, generation)));

  app.get('/sdapi/v1/progress', route(async (_body, _reply, query) => activity.progress(query.skip_current_image === 'true')));
  app.post('/sdapi/v1/interrupt', route(async () => (await activity.interrupt(), {})));
  app.post('/sdapi/v1/skip', route(async () => (await activity.skip(), {})));

  app.get('/sdapi/v1/options', route(async () => options.all()));
  app.post('/sdapi/v1/options', route(async (body, reply) => {
    await options.update(body, resolveModel);
    return reply.type('application/json').send('null');
  }));

  app.get('/sdapi/v1/samplers', route(async () => A1111_SAMPLERS.map(({ name, aliases, options: o }) => ({ name, aliases, options: o }))));
  app.get('/sdapi/v1/schedulers', route(async () => A1111_SCHEDULES));
  app.get('/sdapi/v1/sd-models', route(async () => (await deps.models.models()).map(sdModelItem)));
  app.post('/sdapi/v1/refresh-checkpoints', route(async () => null));
  app.get('/sdapi/v1/scripts', route(async () => ({ txt2img: [], img2img: [] })));
  app.get('/sdapi/v1/sd-vae', route(async () => ((await deps.models.vaes?.()) ?? []).map(sdVaeItem)));
  app.post('/sdapi/v1/refresh-vae', route(async () => null));
  // Listings clients fetch when they connect, of things Nuri has none of: empty, not 404.
  for (const path of ['upscalers', 'latent-upscale-modes', 'hypernetworks', 'face-restorers', 'realesrgan-models', 'prompt-styles', 'script-info', 'extensions']) {
    app.get(`/sdapi/v1/${path}`, route(async () => []));
  }
  // The ControlNet extension's own listings (its units ride on txt2img / img2img: sdapi/controlnet.ts).
  app.get('/controlnet/model_list', route(async () => ({ model_list: ((await deps.models.controlnets?.()) ?? []).map((m) => m.name) })));
  app.get('/controlnet/module_list', route(async () => ({ module_list: [...CONTROL_PREPROCESSORS] })));
  app.get('/sdapi/v1/cmd-flags', route(async () => ({})));
  app.get('/sdapi/v1/loras', route(async () => (await deps.models.loras()).map((l) => ({ name: l.name, alias: l.name, path: l.path, metadata: {} }))));
  app.get('/sdapi/v1/embeddings', route(async () => {
    const { loaded, skipped } = embeddings.read(await deps.models.embeddings());
    const item = (vectors: number, shape: number) => ({ step: null, sd_checkpoint: null, sd_checkpoint_name: null, shape, vectors });
    return {
      loaded: Object.fromEntries(loaded.map((e) => [e.token, item(e.vectors, e.shape)])),
      skipped: Object.fromEntries(skipped.map((e) => [e.name, item(0, 0)])),
    };
  }));

  app.post('/sdapi/v1/png-info', { bodyLimit: IMAGE_BODY_LIMIT }, route(async (body) => {
    const { image } = parseBody(pngInfoRequest, body);
    const bytes = decodeBase64Image(image, ['image']);
    let text: Record<string, string>;
    try {
      text = parsePngText(bytes);
    } catch {
      // A1111 reads JPEG/WebP EXIF too; Nuri writes PNG only, so other images simply carry nothing.
      if (bytes.subarray(1, 4).toString('latin1') === 'PNG') throw SdapiError.invalid(['image'], 'is a damaged PNG');
      text = {};
    }
    const { parameters: info = '', ...items } = text;
    return { info, items, parameters: info ? infotextFields(info) : {} };
  }));
}

/** A1111's parse_generation_parameters: the infotext as a flat dict, "Size" split in two. */
function infotextFields(text: string): Record<string, string | number> {
  const p = parseParameters(text);
  const fields: Record<string, string | number> = { Prompt: p.prompt, 'Negative prompt': p.negativePrompt ?? '' };
  // Unknown fields (and known ones whose values did not read) come back as they were written.
  for (const [key, value] of settingsFields({ ...p, extra: undefined })) {
    if (key === 'Size') Object.assign(fields, { 'Size-1': String(p.width), 'Size-2': String(p.height) });
    else fields[key] = value;
  }
  return { ...fields, ...p.extra };
}
