// CLIP's text tower (transformers' CLIPTextModel), the text encoder of Stable Diffusion 1.x/2.x:
// token + position embeddings, pre-LayerNorm transformer layers with causal self-attention, a final
// LayerNorm, and the pooled state at each prompt's end-of-text token. Parameter names are
// transformers' own, so a `text_encoder/` folder loads by name.

import {
  type CompiledGraph,
  Embedding,
  LayerNorm,
  Linear,
  Module,
  Parameter,
  type RandomSource,
  type RunOptions,
  Tensor,
  add,
  cast,
  compile,
  concat,
  equal,
  gather,
  greaterOrEqual,
  joinName,
  matmul,
  max,
  slice,
  squeeze,
  sub,
  sym,
  unsqueeze,
  where,
} from '../engine/index.ts';
import type { ClipTokenizer } from '../tokenizers/clip.ts';
import { ClipEncoder, causalMask, initNormal } from './clip-encoder.ts';
import type { ClipTextConfig } from './checkpoint/clip-config.ts';

export type { ClipTextConfig } from './checkpoint/clip-config.ts';

export class ClipTextEmbeddings extends Module {
  readonly tokenEmbedding: Embedding;
  readonly positionEmbedding: Embedding;
  /**
   * Rows appended to the vocabulary (Textual Inversion), one [1, C] Parameter per new token id,
   * so each can be trained or frozen on its own while the checkpoint's table stays frozen.
   */
  readonly addedTokens: Parameter[] = [];

  constructor(name: string, config: ClipTextConfig) {
    super(name);
    const std = 0.02 * config.initializer_factor;
    this.tokenEmbedding = new Embedding(joinName(name, 'token_embedding'), config.vocab_size, config.hidden_size, std);
    this.positionEmbedding = new Embedding(joinName(name, 'position_embedding'), config.max_position_embeddings, config.hidden_size, std);
  }

  /** The vocabulary's size including added tokens: valid ids are below it. */
  get tokenCount(): number {
    return this.tokenEmbedding.count + this.addedTokens.length;
  }

  /** [B, L] ids → [B, L, C]: token embedding plus the embedding of each position. */
  forward(inputIds: Tensor): Tensor {
    const length = inputIds.shape[1] as number;
    return add(this.lookupTokens(inputIds), slice(this.positionEmbedding.weight.tensor, 0, 0, length));
  }

  /**
   * Token rows for ids. Added ids are looked up in their own small table and the rest in the
   * checkpoint's, so neither the forward pass nor the gradient of an added row ever copies or
   * scatters into the full vocabulary table.
   */
  private lookupTokens(ids: Tensor): Tensor {
    const table = this.tokenEmbedding.weight.tensor;
    if (!this.addedTokens.length) return gather(table, ids);
    const first = this.tokenEmbedding.count;
    const isAdded = greaterOrEqual(ids, first);
    const fromTable = gather(table, where(isAdded, 0, ids));
    const fromAdded = gather(concat(this.addedTokens.map((p) => p.tensor), 0), where(isAdded, sub(ids, first), 0));
    return where(unsqueeze(isAdded, -1), fromAdded, fromTable);
  }
}

export interface ClipTextForwardOptions {
  /**
   * Which hidden state conditions the image, counted from the end as the community does ("CLIP
   * skip"): 1 (default) is the last layer, 2 the penultimate one (diffusers' `clip_skip=1`), …
   * The chosen state goes through the final LayerNorm, and the pooled output is taken from it.
   */
  clipSkip?: number;
  /** Also return every hidden state (all layers run whatever `clipSkip` is). */
  outputHiddenStates?: boolean;
}

export interface ClipTextOutput {
  /** [B, L, C]: final-LayerNormed state of the last layer, or of the layer `clipSkip` selects. */
  lastHiddenState: Tensor;
  /** [B, C]: `lastHiddenState` at each row's first end-of-text token. */
  pooled: Tensor;
  /** [B, projection_dim]: `text_projection(pooled)`, for models with a projection. */
  textEmbeds?: Tensor;
  /** transformers' `hidden_states`: [embeddings, after layer 1, …, after layer N], none normed. */
  hiddenStates?: Tensor[];
  /** hidden_states[-2]: the penultimate layer's output before the final LayerNorm (SDXL's conditioning). */
  penultimate?: Tensor;
}

export class ClipTextModel extends Module {
  readonly embeddings: ClipTextEmbeddings;
  readonly encoder: ClipEncoder;
  readonly finalLayerNorm: LayerNorm;
  readonly textProjection: Linear | undefined;

  constructor(
    readonly config: ClipTextConfig,
    name = '',
  ) {
    super(name);
    const prefix = joinName(name, 'text_model');
    this.embeddings = new ClipTextEmbeddings(joinName(prefix, 'embeddings'), config);
    this.encoder = new ClipEncoder(joinName(prefix, 'encoder'), config);
    this.finalLayerNorm = new LayerNorm(joinName(prefix, 'final_layer_norm'), config.hidden_size, config.layer_norm_eps);
    this.textProjection = config.with_projection ? new Linear(joinName(name, 'text_projection'), config.hidden_size, config.projection_dim, false) : undefined;
  }

  /**
   * Appends one token-embedding row per value (each [C]) with ids tokenCount, tokenCount + 1, …
   * (the ids `ClipTokenizer.addToken` hands out in the same order). Returns the new rows' Parameters:
   * compile a graph with one trainable (GraphSpec.trainable) to learn it with the rest of the table frozen.
   */
  addTokenEmbeddings(values: readonly Float32Array[]): Parameter[] {
    const dim = this.config.hidden_size;
    return values.map((value) => {
      const id = this.embeddings.tokenCount;
      const row = new Parameter(joinName(this.embeddings.tokenEmbedding.name, `added_${id}`), [1, dim]);
      row.setValue(value);
      this.embeddings.addedTokens.push(row);
      return row;
    });
  }

  /** The current embedding [C] of one token id (a copy), e.g. to initialise a new token from a word. */
  tokenEmbeddingRow(id: number): Float32Array {
    const { tokenEmbedding, addedTokens, tokenCount } = this.embeddings;
    if (!Number.isInteger(id) || id < 0 || id >= tokenCount) throw new RangeError(`token id ${id} is outside the ${tokenCount}-token vocabulary`);
    if (id >= tokenEmbedding.count) return new Float32Array(addedTokens[id - tokenEmbedding.count].value());
    const dim = this.config.hidden_size;
    return tokenEmbedding.weight.value().slice(id * dim, (id + 1) * dim);
  }

  forward(inputIds: Tensor, options: ClipTextForwardOptions = {}): ClipTextOutput {
    const length = inputIds.shape[1];
    if (inputIds.rank !== 2 || (inputIds.dtype !== 'int64' && inputIds.dtype !== 'int32')) {
      throw new Error(`ClipTextModel: input ids must be integer [B, L], got ${inputIds}`);
    }
    if (typeof length !== 'number' || length > this.config.max_position_embeddings) {
      throw new Error(`ClipTextModel: sequence length must be a fixed size ≤ ${this.config.max_position_embeddings}, got ${length}`);
    }
    const layerCount = this.config.num_hidden_layers;
    const clipSkip = options.clipSkip ?? 1;
    if (!Number.isInteger(clipSkip) || clipSkip < 1 || clipSkip > layerCount) {
      throw new RangeError(`ClipTextModel: clipSkip must be an integer from 1 to ${layerCount}, got ${clipSkip}`);
    }
    const used = layerCount + 1 - clipSkip; // index into the hidden states
    const states = this.encoder.forward(this.embeddings.forward(inputIds), causalMask(length), options.outputHiddenStates ? layerCount : used);
    const lastHiddenState = this.finalLayerNorm.forward(states[used]);
    const pick = firstTokenOneHot(inputIds, this.config.eos_token_id); // [B, L]
    const pooled = squeeze(matmul(unsqueeze(pick, 1), lastHiddenState), 1);
    return {
      lastHiddenState,
      pooled,
      ...(this.textProjection ? { textEmbeds: this.textProjection.forward(pooled) } : {}),
      ...(options.outputHiddenStates ? { hiddenStates: states, penultimate: states[layerCount - 1] } : {}),
    };
  }

  override init(rng: RandomSource): void {
    super.init(rng);
    if (this.textProjection) initNormal(this.textProjection.weight, this.config.hidden_size ** -0.5 * this.config.initializer_factor, rng);
  }
}

/**
 * One-hot [B, L] float of each row's first end-of-text token (the argmax of the ids for legacy
 * configs whose eos_token_id is 2; position 0 when a row has none, as argmax gives). Multiplying
 * by a one-hot selects exactly and keeps gradients flowing to the chosen states.
 */
function firstTokenOneHot(ids: Tensor, eosTokenId: number): Tensor {
  const length = ids.shape[1] as number;
  const hit = equal(ids, eosTokenId === 2 ? max(ids, -1, true) : eosTokenId);
  // Earlier positions score higher; position 0 gets +1 so that a row without a hit picks it.
  const earlier = Float32Array.from({ length }, (_, l) => 2 * (length - l));
  const fallback = Float32Array.from({ length }, (_, l) => (l === 0 ? 1 : 0));
  const score = add(where(hit, Tensor.constant(earlier, [length]), 0), Tensor.constant(fallback, [length]));
  return cast(equal(score, max(score, -1, true)), 'float32');
}

export interface ClipTextGraphOptions {
  /** Token sequence length (default: the model's max_position_embeddings, 77). */
  length?: number;
  clipSkip?: number;
  run?: RunOptions;
  /** Parameters that are graph inputs fed as they stand (GraphSpec.trainable). */
  trainable?: Iterable<Parameter>;
}

/**
 * The text encoder as a session: input `input_ids` int64 [B, length] with a symbolic batch,
 * outputs `last_hidden_state` [B, length, C] and `pooled` [B, C] (and `text_embeds` with a projection).
 */
export async function compileClipText(model: ClipTextModel, options: ClipTextGraphOptions = {}): Promise<CompiledGraph> {
  const ids = Tensor.input('input_ids', [sym('B'), options.length ?? model.config.max_position_embeddings], 'int64');
  const out = model.forward(ids, { clipSkip: options.clipSkip });
  const outputs: Record<string, Tensor> = { last_hidden_state: out.lastHiddenState, pooled: out.pooled };
  if (out.textEmbeds) outputs.text_embeds = out.textEmbeds;
  return compile({ inputs: [ids], outputs, trainable: options.trainable }, options.run);
}

export interface EncodePromptsOptions {
  clipSkip?: number;
  /** Padded token length (default: the tokenizer's model_max_length, 77). */
  maxLength?: number;
  run?: RunOptions;
  /** A text-encoder session the caller holds (compileClipText with the same length and clip skip). */
  graph?: CompiledGraph;
}

/**
 * Tokenizes and encodes prompts: the [B, 77, C] conditioning a UNet cross-attends to. Without
 * `options.graph` the session is compiled for this call and released after it (freed unless
 * someone else holds it); a caller that encodes again should hold one.
 */
export async function encodePrompts(
  model: ClipTextModel,
  tokenizer: ClipTokenizer,
  prompts: string[],
  options: EncodePromptsOptions = {},
): Promise<{ data: Float32Array; shape: [number, number, number] }> {
  const length = options.maxLength ?? tokenizer.modelMaxLength;
  const dim = model.config.hidden_size;
  if (!prompts.length) return { data: new Float32Array(0), shape: [0, length, dim] };
  const { inputIds } = tokenizer.call(prompts, { maxLength: length });
  const ids = new BigInt64Array(prompts.length * length);
  inputIds.forEach((row, b) => row.forEach((id, l) => (ids[b * length + l] = BigInt(id))));
  const graph = options.graph ?? (await compileClipText(model, { length, clipSkip: options.clipSkip, run: options.run }));
  try {
    const out = await graph.run({ input_ids: { data: ids, shape: [prompts.length, length] } });
    return { data: out.last_hidden_state.data as Float32Array, shape: [prompts.length, length, dim] };
  } finally {
    if (!options.graph) await graph.release();
  }
}
