// An A1111 txt2img/img2img request → the native `generate` params Nuri's queue runs: sampler
// names, override_settings, `<lora:…>` tags and embeddings by name, seeds, and a note for every
// field that asks for something Nuri does not do.

import { randomInt } from 'node:crypto';
import { type EmbeddingInfo, type RegistryEntry, embeddingsInPrompt, findModel, vaeNearCheckpoint } from './catalog.ts';
import { MAX_SEED } from '../schemas.ts';
import { SdapiError } from './errors.ts';
import { extractNetworks } from './extra-networks.ts';
import { AUTOMATIC_VAE, CLIP_SKIP_OPTION, MODEL_OPTION, NO_VAE, type SdapiOptions, VAE_OPTION } from './options.ts';
import type { A1111Request } from './request.ts';
import { DEFAULT_SAMPLER, resolveSampler, samplerNames } from './samplers.ts';


export interface TranslateContext {
  models: readonly RegistryEntry[];
  vaes?: readonly RegistryEntry[];
  loras: readonly RegistryEntry[];
  embeddings: readonly EmbeddingInfo[];
  options: SdapiOptions;
}

export interface GenerationPlan {
  /** Native generate params shared by every iteration (the seed is per iteration). */
  params: Record<string, unknown>;
  /** The first image's seed; image i of the request uses seed + i, as A1111's all_seeds. */
  seed: number;
  subseed: number;
  batchSize: number;
  iterations: number;
  samplerLabel: string;
  model: RegistryEntry;
  /** The VAE sd_vae chose (absent: the model's own). */
  vae?: RegistryEntry;
  clipSkip: number;
  notes: string[];
}

export function planGeneration(request: A1111Request, context: TranslateContext): GenerationPlan {
  const notes: string[] = [];
  const overrides = { ...request.override_settings };

  const wantedModel = overrides[MODEL_OPTION] ?? undefined;
  delete overrides[MODEL_OPTION];
  if (wantedModel !== undefined && typeof wantedModel !== 'string') throw SdapiError.invalid(['override_settings', MODEL_OPTION], 'must be a model title (GET /sdapi/v1/sd-models)', 'type_error.str');
  const modelName = wantedModel ?? context.options.model;
  const model = findModel(context.models, modelName);
  if (!model) throw new SdapiError(404, `Model not found: ${JSON.stringify(modelName)} (available: ${context.models.map((m) => m.name).join(', ')})`);

  const clipSkip = overrides[CLIP_SKIP_OPTION] ?? context.options.clipSkip;
  delete overrides[CLIP_SKIP_OPTION];
  if (typeof clipSkip !== 'number' || !Number.isInteger(clipSkip) || clipSkip < 1 || clipSkip > 12) {
    throw SdapiError.invalid(['override_settings', CLIP_SKIP_OPTION], 'must be an integer from 1 to 12');
  }
  const wantedVae = overrides[VAE_OPTION] ?? context.options.vae;
  delete overrides[VAE_OPTION];
  if (typeof wantedVae !== 'string') throw SdapiError.invalid(['override_settings', VAE_OPTION], 'must be a VAE name (GET /sdapi/v1/sd-vae), "Automatic" or "None"', 'type_error.str');
  const vae = wantedVae === AUTOMATIC_VAE ? vaeNearCheckpoint(model, context.vaes ?? []) : wantedVae === NO_VAE ? undefined : findModel(context.vaes ?? [], wantedVae);
  if (!vae && wantedVae !== AUTOMATIC_VAE && wantedVae !== NO_VAE) notes.push(`sd_vae ${JSON.stringify(wantedVae)} is not a VAE of this server (GET /sdapi/v1/sd-vae); the model's own was used`);
  for (const key of Object.keys(overrides)) notes.push(`override_settings.${key} is not supported and was ignored`);

  const samplerName = request.sampler_name ?? request.sampler_index ?? DEFAULT_SAMPLER;
  const sampler = resolveSampler(samplerName, request.scheduler);
  if (!sampler) {
    const field = request.sampler_name !== null ? 'sampler_name' : 'sampler_index';
    throw SdapiError.invalid([field], `unknown sampler ${JSON.stringify(samplerName)}; Nuri has ${samplerNames().join(', ')}`);
  }
  if (sampler.note) notes.push(sampler.note);

  const positive = extractNetworks(request.prompt);
  const negative = extractNetworks(request.negative_prompt);
  notes.push(...positive.ignored, ...negative.ignored);
  const tagged = [...positive.loras, ...negative.loras.filter((l) => !positive.loras.some((p) => p.name === l.name))];
  const loras = request.disable_extra_networks ? [] : tagged.map((lora) => ({ name: loraName(lora.name, context.loras), weight: lora.weight }));
  if (request.disable_extra_networks && tagged.length) notes.push('disable_extra_networks: the <lora:…> tags were removed and not applied');
  const embeddings = embeddingsInPrompt([positive.prompt, negative.prompt], context.embeddings);

  const batchSize = request.batch_size;
  const iterations = request.n_iter;
  const count = batchSize * iterations;
  if (request.seed !== -1 && request.seed + count - 1 > MAX_SEED) throw SdapiError.invalid(['seed'], `seed + ${count} images must stay below 2^32`);
  const seed = request.seed === -1 ? randomInt(0, MAX_SEED - count + 1) : request.seed;
  const subseed = request.subseed === -1 ? randomInt(0, MAX_SEED) : request.subseed;

  const params: Record<string, unknown> = {
    model: model.name,
    prompt: positive.prompt,
    steps: request.steps,
    scheduler: sampler.scheduler,
    guidance: request.cfg_scale,
    batch: batchSize,
  };
  if (negative.prompt) params.negativePrompt = negative.prompt;
  // Nuri's η is DDIM's only (A1111 also scales ancestral noise with it, which Euler a does at 1).
  if (request.eta !== null && sampler.scheduler === 'ddim') params.eta = request.eta;
  else if (request.eta !== null) notes.push(`eta applies to DDIM only and was ignored for ${sampler.label}`);
  if (request.width !== null) params.width = request.width;
  if (request.height !== null) params.height = request.height;
  if (clipSkip > 1) params.clipSkip = clipSkip;
  if (vae) params.vae = vae.name;
  if (loras.length) params.loras = loras;
  if (embeddings.length) params.embeddings = embeddings;
  return { params, seed, subseed, batchSize, iterations, samplerLabel: sampler.label, model, vae, clipSkip, notes };
}

/** The registry name of a LoRA a prompt tag names (by name or file stem); a clear 400 otherwise. */
function loraName(wanted: string, loras: readonly RegistryEntry[]): string {
  const found = findModel(loras, wanted);
  if (!found) {
    const known = loras.map((l) => l.name).join(', ') || 'none';
    throw new SdapiError(400, `<lora:${wanted}:…>: no LoRA named ${JSON.stringify(wanted)} in the models folder's loras/ (known: ${known})`);
  }
  return found.name;
}
