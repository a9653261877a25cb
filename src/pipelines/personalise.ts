// Applying personalisation files to a loaded model before it generates: LoRAs merged into the
// weights (`--lora FILE[:WEIGHT]`) and Textual Inversion embeddings added to the vocabulary
// (`--embedding FILE`). Both must happen before the first graph is compiled.

import { basename } from 'node:path';
import type { StableDiffusionComponents } from '../models/load.ts';
import { loadLoraFile, mergeLora } from '../models/lora.ts';
import { type TextualInversionEmbedding, addEmbeddingToModel, expandEmbeddingTokens, readEmbeddingFile } from '../models/textual-inversion.ts';

export interface LoraSpec {
  path: string;
  /** Strength: 1 applies the LoRA as trained, 0 not at all. */
  weight: number;
}

export interface PersonaliseOptions {
  loras?: readonly LoraSpec[];
  embeddings?: readonly string[];
}

export interface Personalisation {
  embeddings: TextualInversionEmbedding[];
  /** What was applied, for the record (PNG metadata): "name:weight". */
  loraLabels: string[];
  warnings: string[];
  /** Rewrites a prompt for multi-vector embeddings (TOKEN → TOKEN TOKEN_1 …). */
  expandPrompt(prompt: string): string;
}

/**
 * Merges each LoRA (W += weight·alpha/rank·B·A) and adds each embedding's token. Merging rather than
 * adding branches keeps the sampling graph identical to the base model's, so every step costs what
 * a plain step costs, however many LoRAs are stacked and whatever their rank; the merge itself is
 * one small matrix product per adapted layer, once.
 */
export async function personalise(components: StableDiffusionComponents, options: PersonaliseOptions): Promise<Personalisation> {
  const warnings: string[] = [];
  const loraLabels: string[] = [];
  for (const { path, weight } of options.loras ?? []) {
    const read = loadLoraFile(path, components);
    if (!read.layers.length) throw new Error(`--lora ${path}: no LoRA layer of this model found in the file (${read.unmatched.length} unrecognised keys, e.g. ${read.unmatched[0] ?? 'none'})`);
    if (read.unmatched.length) warnings.push(`--lora ${path}: ${read.unmatched.length} key(s) name no layer of this model and were skipped, e.g. ${read.unmatched[0]}`);
    await mergeLora(components, read.layers, weight, `--lora ${path}`);
    loraLabels.push(`${basename(path).replace(/\.safetensors$/i, '')}:${weight}`);
  }
  const embeddings = (options.embeddings ?? []).map((path) => {
    const embedding = readEmbeddingFile(path);
    addEmbeddingToModel(components, embedding);
    return embedding;
  });
  return { embeddings, loraLabels, warnings, expandPrompt: (prompt) => expandEmbeddingTokens(prompt, embeddings) };
}

/** Parses `FILE[:WEIGHT]`; a colon followed by something that is not a number belongs to the path. */
export function parseLoraSpec(value: string): LoraSpec {
  const at = value.lastIndexOf(':');
  const tail = at > 0 ? value.slice(at + 1) : '';
  if (at > 0 && tail !== '' && Number.isFinite(Number(tail))) return { path: value.slice(0, at), weight: Number(tail) };
  return { path: value, weight: 1 };
}
