// CLIP's image tower (transformers' CLIPVisionModel), a ViT: the image cut into patches by a strided
// convolution, a learned class token in front, position embeddings, a LayerNorm ("pre_layrnorm", sic,
// as the checkpoints spell it), transformer layers attending to every patch, and the class token's
// final state through a LayerNorm as the pooled image feature.

import {
  Conv2d,
  Embedding,
  LayerNorm,
  Linear,
  Module,
  Parameter,
  type RandomSource,
  type Tensor,
  add,
  concat,
  expandAs,
  joinName,
  reshape,
  slice,
  squeeze,
  transpose,
} from '../engine/index.ts';
import { type ClipEncoderConfig, ClipEncoder, configFloat, configInt, initNormal, readEncoderConfig } from './clip-encoder.ts';
import { bindWeights } from './checkpoint/bind.ts';
import { type ConfigJson as Json, readConfigJson } from './checkpoint/config-file.ts';
import { openWeights } from './checkpoint/weights.ts';

export interface ClipVisionConfig extends ClipEncoderConfig {
  numChannels: number;
  imageSize: number;
  patchSize: number;
  projectionDim: number;
  initializerRange: number;
  /** CLIPVisionModelWithProjection / CLIPModel: a bias-free `visual_projection` after pooling. */
  withProjection: boolean;
}

/** A CLIPVisionConfig config.json (or CLIPConfig's vision_config) with transformers' defaults. */
export function clipVisionConfig(json: Json, what = 'CLIP vision config'): ClipVisionConfig {
  const architectures = Array.isArray(json.architectures) ? json.architectures : [];
  const config: ClipVisionConfig = {
    ...readEncoderConfig(json, { hiddenSize: 768, intermediateSize: 3072, numHiddenLayers: 12, numAttentionHeads: 12 }, what),
    numChannels: configInt(json, 'num_channels', 3, what),
    imageSize: configInt(json, 'image_size', 224, what),
    patchSize: configInt(json, 'patch_size', 32, what),
    projectionDim: configInt(json, 'projection_dim', 512, what),
    initializerRange: configFloat(json, 'initializer_range', 0.02, what),
    withProjection: architectures.includes('CLIPVisionModelWithProjection'),
  };
  if (config.imageSize % config.patchSize) throw new Error(`${what}: image_size ${config.imageSize} is not a multiple of patch_size ${config.patchSize}`);
  return config;
}

export class ClipVisionEmbeddings extends Module {
  readonly classEmbedding: Parameter;
  readonly patchEmbedding: Conv2d;
  readonly positionEmbedding: Embedding;
  readonly gridSize: number;

  constructor(
    name: string,
    private readonly config: ClipVisionConfig,
  ) {
    super(name);
    const c = config.hiddenSize;
    this.gridSize = config.imageSize / config.patchSize;
    this.classEmbedding = this.param('class_embedding', [c]);
    this.patchEmbedding = new Conv2d(joinName(name, 'patch_embedding'), config.numChannels, c, config.patchSize, { stride: config.patchSize, bias: false });
    this.positionEmbedding = new Embedding(joinName(name, 'position_embedding'), this.gridSize ** 2 + 1, c);
  }

  /** [B, channels, size, size] pixels → [B, 1 + patches, C]: the class token, then the patches row by row. */
  forward(pixelValues: Tensor): Tensor {
    const c = this.config.hiddenSize;
    const grid = this.patchEmbedding.forward(pixelValues); // [B, C, g, g]
    const patches = transpose(reshape(grid, [grid.shape[0], c, this.gridSize ** 2]), [0, 2, 1]); // [B, g², C]
    const classToken = expandAs(reshape(this.classEmbedding.tensor, [1, 1, c]), slice(patches, 1, 0, 1));
    return add(concat([classToken, patches], 1), this.positionEmbedding.weight.tensor);
  }

  override init(rng: RandomSource): void {
    const { hiddenSize, initializerRange, initializerFactor } = this.config;
    initNormal(this.classEmbedding, hiddenSize ** -0.5 * initializerFactor, rng);
    initNormal(this.patchEmbedding.weight, initializerRange * initializerFactor, rng);
    initNormal(this.positionEmbedding.weight, initializerRange * initializerFactor, rng);
  }
}

export interface ClipVisionOutput {
  /** [B, 1 + patches, C]: the last layer's output (no final LayerNorm, as transformers returns it). */
  lastHiddenState: Tensor;
  /** [B, C]: post-LayerNormed class token. */
  pooled: Tensor;
  /** [B, projectionDim]: `visual_projection(pooled)`, for models with a projection. */
  imageEmbeds?: Tensor;
  /** [after pre_layrnorm, after layer 1, …, after layer N]. */
  hiddenStates?: Tensor[];
}

export class ClipVisionModel extends Module {
  readonly embeddings: ClipVisionEmbeddings;
  readonly preLayrnorm: LayerNorm;
  readonly encoder: ClipEncoder;
  readonly postLayernorm: LayerNorm;
  readonly visualProjection: Linear | undefined;

  constructor(
    readonly config: ClipVisionConfig,
    name = '',
  ) {
    super(name);
    const prefix = joinName(name, 'vision_model');
    const c = config.hiddenSize;
    this.embeddings = new ClipVisionEmbeddings(joinName(prefix, 'embeddings'), config);
    this.preLayrnorm = new LayerNorm(joinName(prefix, 'pre_layrnorm'), c, config.layerNormEps);
    this.encoder = new ClipEncoder(joinName(prefix, 'encoder'), config);
    this.postLayernorm = new LayerNorm(joinName(prefix, 'post_layernorm'), c, config.layerNormEps);
    this.visualProjection = config.withProjection ? new Linear(joinName(name, 'visual_projection'), c, config.projectionDim, false) : undefined;
  }

  /** Pixels [B, channels, imageSize, imageSize], already normalised with CLIP's mean and std. */
  forward(pixelValues: Tensor, options: { outputHiddenStates?: boolean } = {}): ClipVisionOutput {
    const { numChannels, imageSize } = this.config;
    const [, channels, height, width] = pixelValues.shape;
    if (pixelValues.rank !== 4 || channels !== numChannels || height !== imageSize || width !== imageSize) {
      throw new Error(`ClipVisionModel: pixel values must be [B, ${numChannels}, ${imageSize}, ${imageSize}], got ${pixelValues}`);
    }
    const states = this.encoder.forward(this.preLayrnorm.forward(this.embeddings.forward(pixelValues)));
    const lastHiddenState = states[states.length - 1];
    const pooled = this.postLayernorm.forward(squeeze(slice(lastHiddenState, 1, 0, 1), 1));
    return {
      lastHiddenState,
      pooled,
      ...(this.visualProjection ? { imageEmbeds: this.visualProjection.forward(pooled) } : {}),
      ...(options.outputHiddenStates ? { hiddenStates: states } : {}),
    };
  }

  override init(rng: RandomSource): void {
    super.init(rng);
    if (this.visualProjection) initNormal(this.visualProjection.weight, this.config.hiddenSize ** -0.5 * this.config.initializerFactor, rng);
  }
}

/** Loads a transformers CLIPVisionModel(WithProjection) folder (config.json + model.safetensors). */
export function loadClipVisionModel(dir: string, options: { variant?: string } = {}): ClipVisionModel {
  const model = new ClipVisionModel(clipVisionConfig(readConfigJson(dir), `${dir}/config.json`));
  const file = openWeights(dir, 'model', options.variant);
  bindWeights(model.parameters(), file, { what: 'CLIP vision encoder', ignore: (name) => name === 'vision_model.embeddings.position_ids' });
  return model;
}
