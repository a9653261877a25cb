// SDXL's prompt encoding (diffusers' StableDiffusionXLPipeline.encode_prompt): two CLIP text
// encoders, each with its own tokenizer, whose penultimate hidden states (no final LayerNorm) are
// concatenated on the feature axis — CLIP ViT-L's 768 then OpenCLIP bigG's 1280 → 2048 in SDXL —
// and the second encoder's pooled, projected output (`text_embeds`) as the UNet's added condition.
//
// Prompt syntax and long prompts reach SDXL as token ids (`encodeSdxlTokenIds`), one row per chunk.

import { type CompiledGraph, type Parameter, type RunOptions, Tensor, compile, sym } from '../engine/index.ts';
import type { ClipTokenizer } from '../tokenizers/clip.ts';
import type { ClipTextModel } from './clip-text.ts';

/** One of SDXL's text towers with the tokenizer that feeds it. */
export interface SdxlTextTower {
  tokenizer: ClipTokenizer;
  textEncoder: ClipTextModel;
}

export interface SdxlTextGraphOptions {
  /** Token sequence length (default: the model's max_position_embeddings, 77). */
  length?: number;
  /**
   * Community clip skip: 1 (default) conditions on hidden_states[-2], SDXL's own choice, and each
   * step further goes one layer earlier (diffusers' clip_skip = clipSkip − 1 → hidden_states[-(clip_skip + 2)]).
   */
  clipSkip?: number;
  run?: RunOptions;
  /** Parameters that are graph inputs fed as they stand (GraphSpec.trainable). */
  trainable?: Iterable<Parameter>;
}

/**
 * One SDXL text encoder as a session: input `input_ids` int64 [B, length]; outputs `hidden_states`
 * [B, length, C] (the layer clip skip picks, before the final LayerNorm) and, for the projected
 * encoder, `text_embeds` [B, projection_dim] (from the last layer, final-LayerNormed, at the first EOS).
 */
export async function compileSdxlTextEncoder(model: ClipTextModel, options: SdxlTextGraphOptions = {}): Promise<CompiledGraph> {
  const layers = model.config.num_hidden_layers;
  const fromEnd = (options.clipSkip ?? 1) + 1;
  if (!Number.isInteger(fromEnd) || fromEnd < 2 || fromEnd > layers + 1) {
    throw new RangeError(`SDXL text encoder: clip skip must be an integer from 1 to ${layers}, got ${options.clipSkip}`);
  }
  const ids = Tensor.input('input_ids', [sym('B'), options.length ?? model.config.max_position_embeddings], 'int64');
  const out = model.forward(ids, { outputHiddenStates: true });
  const outputs: Record<string, Tensor> = { hidden_states: out.hiddenStates![layers + 1 - fromEnd] };
  if (out.textEmbeds) outputs.text_embeds = out.textEmbeds;
  return compile({ inputs: [ids], outputs, trainable: options.trainable }, options.run);
}

export interface SdxlPromptEmbeddings {
  /** [B, L, C1 + C2]: what the UNet cross-attends to. */
  states: Float32Array;
  /** [B, projection_dim]: the second encoder's text_embeds (the UNet's `text_embeds` added condition). */
  pooled: Float32Array;
}

/**
 * Encodes prompts with both towers: `graphs[i]` is `compileSdxlTextEncoder` of `towers[i]`. The last
 * tower must have a text projection; its text_embeds are the pooled vector, as in diffusers (which
 * keeps the last encoder's output[0]).
 */
export async function encodeSdxlPrompts(towers: readonly SdxlTextTower[], graphs: readonly CompiledGraph[], prompts: string[]): Promise<SdxlPromptEmbeddings> {
  const ids = towers.map(({ tokenizer }) => {
    const length = tokenizer.modelMaxLength;
    const rows = new Int32Array(prompts.length * length);
    tokenizer.call(prompts, { maxLength: length }).inputIds.forEach((row, r) => rows.set(row, r * length));
    return rows;
  });
  return encodeSdxlTokenIds(towers, graphs, ids);
}

/**
 * `encodeSdxlPrompts` from token ids: `ids[i]` holds rows of 77 ids for tower i (each tower pads
 * with its own tokenizer's pad token). Long prompts come here as one row per 77-token chunk.
 */
export async function encodeSdxlTokenIds(towers: readonly SdxlTextTower[], graphs: readonly CompiledGraph[], ids: readonly Int32Array[]): Promise<SdxlPromptEmbeddings> {
  const parts: { data: Float32Array; width: number }[] = [];
  let pooled: Float32Array | undefined;
  let positions = 0;
  for (const [i, { tokenizer, textEncoder }] of towers.entries()) {
    const length = tokenizer.modelMaxLength;
    positions = ids[i]!.length;
    const input = BigInt64Array.from(ids[i]!, (id) => BigInt(id));
    const out = await graphs[i].run({ input_ids: { data: input, shape: [positions / length, length] } });
    parts.push({ data: out.hidden_states.data as Float32Array, width: textEncoder.config.hidden_size });
    pooled = out.text_embeds?.data as Float32Array | undefined;
  }
  if (!pooled) throw new Error('SDXL: the second text encoder has no text_projection (CLIPTextModelWithProjection) for the pooled embedding');
  return { states: concatFeatures(parts, positions), pooled };
}

/** Concatenates row-major [rows, width_i] blocks on the last axis. */
function concatFeatures(parts: readonly { data: Float32Array; width: number }[], rows: number): Float32Array {
  const total = parts.reduce((s, p) => s + p.width, 0);
  const out = new Float32Array(rows * total);
  for (let r = 0; r < rows; r++) {
    let at = r * total;
    for (const p of parts) {
      out.set(p.data.subarray(r * p.width, (r + 1) * p.width), at);
      at += p.width;
    }
  }
  return out;
}

/** SDXL's size conditioning: the `time_ids` row of one CFG half. Sizes are [height, width], crops [top, left]. */
export interface SizeConditioning {
  originalSize: readonly [number, number];
  cropTopLeft: readonly [number, number];
  targetSize: readonly [number, number];
}

/** [original_h, original_w, crop_top, crop_left, target_h, target_w] repeated for `batch` rows. */
export function timeIds(size: SizeConditioning, batch: number): Float32Array {
  const row = [...size.originalSize, ...size.cropTopLeft, ...size.targetSize];
  return Float32Array.from({ length: batch * 6 }, (_, i) => row[i % 6]);
}
