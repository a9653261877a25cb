// SDXL's conditioning for a run: both text towers' states for the prompts and negative prompts,
// and the added conditions — the pooled text embedding and the six "micro-conditioning" numbers
// (original size, crop top-left, target size) of each classifier-free-guidance half, as UNet feeds
// `text_embeds` [B, P] and `time_ids` [B, 6].

import type { SizeConditioning } from '../io/parameters.ts';
import { timeIds } from '../models/sdxl-text.ts';
import { type PromptEmbeddings, type PromptSyntaxOptions, encodePromptEmbeddings } from './prompt-embeddings.ts';
import type { Feeds, PromptConditioning, StableDiffusion } from './stable-diffusion.ts';

/** SDXL's size and crop conditioning; one type with what a PNG's parameters record (io/parameters.ts). */
export type SizeConditioningOptions = SizeConditioning;

const SIZE_KEYS = ['originalSize', 'cropTopLeft', 'targetSize', 'negativeOriginalSize', 'negativeCropTopLeft', 'negativeTargetSize'] as const;

/** Size conditioning given to a model without added conditions is a mistake worth naming up front. */
export function checkSizeConditioning(sd: StableDiffusion, o: SizeConditioningOptions): void {
  const given = SIZE_KEYS.filter((k) => o[k] !== undefined);
  if (given.length && !sd.isSdxl) throw new Error(`${given.join(', ')}: size conditioning is SDXL's; ${sd.name} is not an SDXL model`);
}

export interface SdxlConditioning {
  /** [B, 77 · chunks, C1 + C2] */
  cond: Float32Array;
  uncond?: Float32Array;
  /** Context positions per prompt: 77 · chunks (long prompts and BREAK make more chunks). */
  tokens: number;
  added: { cond: Feeds; uncond?: Feeds };
}

/**
 * Encodes a run's prompts for SDXL (with prompt syntax and long prompts, as on SD 1.x/2.x):
 * `negativePrompt` undefined with guidance follows the model's force_zeros_for_empty_prompt
 * (zeros), a given one (even "") is encoded.
 */
export async function encodeSdxlConditioning(
  sd: StableDiffusion,
  o: SizeConditioningOptions & PromptSyntaxOptions & { prompts: readonly string[]; negativePrompt?: string; guided: boolean; clipSkip?: number; width: number; height: number },
): Promise<SdxlConditioning> {
  const batch = o.prompts.length;
  const zeros = o.guided && o.negativePrompt === undefined && sd.components.forceZerosForEmptyPrompt;
  const negatives = o.guided && !zeros ? new Array<string>(batch).fill(o.negativePrompt ?? '') : undefined;
  const text = await encodePromptEmbeddings(sd, o.prompts, negatives, o);
  if (!text.pooled) throw new Error(`${sd.name}: SDXL conditioning needs the pooled text embedding of text_encoder_2`);
  const cond = { states: text.cond, pooled: text.pooled.cond };
  const uncond = zeros
    ? { states: new Float32Array(batch * text.tokens * sd.contextShape[1]), pooled: new Float32Array(batch * sd.pooledWidth) }
    : negatives && { states: text.uncond!, pooled: text.pooled.uncond! };
  return { cond: cond.states, uncond: uncond?.states, tokens: text.tokens, added: addedConditions(sd, o, cond, uncond, batch) };
}

/**
 * SDXL's added conditions for prompts already encoded by encodePromptEmbeddings (Prompt-to-Prompt,
 * attention maps): its pooled vectors, at the default sizes unless given; undefined for other models.
 */
export function addedForEmbeddings(
  sd: StableDiffusion,
  text: Pick<PromptEmbeddings, 'cond' | 'uncond' | 'pooled'>,
  o: SizeConditioningOptions & { width: number; height: number; guided: boolean },
  batch: number,
): { cond: Feeds; uncond?: Feeds } | undefined {
  if (!sd.isSdxl) return undefined;
  if (!text.pooled) throw new Error(`${sd.name}: SDXL conditioning needs the pooled text embedding of text_encoder_2`);
  const uncond = o.guided && text.pooled.uncond ? { states: text.uncond!, pooled: text.pooled.uncond } : undefined;
  return addedConditions(sd, o, { states: text.cond, pooled: text.pooled.cond }, uncond, batch);
}

/** The UNet feeds of SDXL's added conditions for each half. */
function addedConditions(
  sd: StableDiffusion,
  o: SizeConditioningOptions & { width: number; height: number },
  cond: PromptConditioning,
  uncond: PromptConditioning | undefined,
  batch: number,
): { cond: Feeds; uncond?: Feeds } {
  const output: [number, number] = [o.height, o.width];
  const positive = { originalSize: o.originalSize ?? output, cropTopLeft: o.cropTopLeft ?? [0, 0], targetSize: o.targetSize ?? output } as const;
  const negative =
    o.negativeOriginalSize && o.negativeTargetSize
      ? { originalSize: o.negativeOriginalSize, cropTopLeft: o.negativeCropTopLeft ?? [0, 0], targetSize: o.negativeTargetSize }
      : positive;
  const feeds = (c: PromptConditioning, sizes: typeof positive | typeof negative): Feeds => ({
    text_embeds: { data: c.pooled!, shape: [batch, sd.pooledWidth] },
    time_ids: { data: timeIds(sizes, batch), shape: [batch, 6] },
  });
  return { cond: feeds(cond, positive), ...(uncond ? { uncond: feeds(uncond, negative) } : {}) };
}
