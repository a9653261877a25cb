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
import { ClipEncoder, initNormal } from './clip-encoder.ts';
import type { ClipVisionConfig } from './checkpoint/clip-config.ts';

export type { ClipVisionConfig } from './checkpoint/clip-config.ts';

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
    const c = config.hidden_size;
    this.gridSize = config.image_size / config.patch_size;
    this.classEmbedding = this.param('class_embedding', [c]);
    this.patchEmbedding = new Conv2d(joinName(name, 'patch_embedding'), config.num_channels, c, config.patch_size, { stride: config.patch_size, bias: false });
    this.positionEmbedding = new Embedding(joinName(name, 'position_embedding'), this.gridSize ** 2 + 1, c);
  }

  /** [B, channels, size, size] pixels → [B, 1 + patches, C]: the class token, then the patches row by row. */
  forward(pixelValues: Tensor): Tensor {
    const c = this.config.hidden_size;
    const grid = this.patchEmbedding.forward(pixelValues); // [B, C, g, g]
    const patches = transpose(reshape(grid, [grid.shape[0], c, this.gridSize ** 2]), [0, 2, 1]); // [B, g², C]
    const classToken = expandAs(reshape(this.classEmbedding.tensor, [1, 1, c]), slice(patches, 1, 0, 1));
    return add(concat([classToken, patches], 1), this.positionEmbedding.weight.tensor);
  }

  override init(rng: RandomSource): void {
    const { hidden_size: hiddenSize, initializer_range: initializerRange, initializer_factor: initializerFactor } = this.config;
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
    const c = config.hidden_size;
    this.embeddings = new ClipVisionEmbeddings(joinName(prefix, 'embeddings'), config);
    this.preLayrnorm = new LayerNorm(joinName(prefix, 'pre_layrnorm'), c, config.layer_norm_eps);
    this.encoder = new ClipEncoder(joinName(prefix, 'encoder'), config);
    this.postLayernorm = new LayerNorm(joinName(prefix, 'post_layernorm'), c, config.layer_norm_eps);
    this.visualProjection = config.with_projection ? new Linear(joinName(name, 'visual_projection'), c, config.projection_dim, false) : undefined;
  }

  /** Pixels [B, channels, imageSize, imageSize], already normalised with CLIP's mean and std. */
  forward(pixelValues: Tensor, options: { outputHiddenStates?: boolean } = {}): ClipVisionOutput {
    const { num_channels: numChannels, image_size: imageSize } = this.config;
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
    if (this.visualProjection) initNormal(this.visualProjection.weight, this.config.hidden_size ** -0.5 * this.config.initializer_factor, rng);
  }
}
