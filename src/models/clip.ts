// CLIP (transformers' CLIPModel): the text and image towers projected into one embedding space,
// compared by cosine similarity scaled by a learned temperature. Trained contrastively: in a batch
// of N matching text–image pairs, each text should pick out its own image among N, and vice versa.

import { join } from 'node:path';
import {
  Module,
  type Parameter,
  type RandomSource,
  Tensor,
  add,
  div,
  exp,
  logSoftmax,
  mean,
  mul,
  neg,
  sqrt,
  sum,
  transposeLast,
  matmul,
} from '../engine/index.ts';
import { configFloat, configInt } from './clip-encoder.ts';
import { type ClipTextConfig, ClipTextModel, clipTextConfig } from './clip-text.ts';
import { type ClipVisionConfig, ClipVisionModel, clipVisionConfig } from './clip-vision.ts';
import { inFile } from './checkpoint/config-file.ts';
import { bindWeights } from './checkpoint/bind.ts';
import { type ConfigJson as Json, readConfigJson } from './checkpoint/config-file.ts';
import { openWeights } from './checkpoint/weights.ts';

export interface ClipConfig {
  text: ClipTextConfig;
  vision: ClipVisionConfig;
  projectionDim: number;
  /** Initial log of the logit scale: ln(1/0.07) ≈ 2.6592, as in the CLIP paper. */
  logitScaleInitValue: number;
}

function section(json: Json, key: string): Json {
  const v = json[key] ?? {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`CLIP config: "${key}" must be an object`);
  return v as Json;
}

/** A CLIPModel config.json: text_config, vision_config, projection_dim, logit_scale_init_value. */
export function clipConfig(json: Json): ClipConfig {
  const projectionDim = configInt(json, 'projection_dim', 512, 'CLIP config');
  // CLIPModel's projection size wins over the towers' own projection_dim fields.
  return {
    text: { ...clipTextConfig(section(json, 'text_config'), 'CLIP text_config'), projectionDim, withProjection: true },
    vision: { ...clipVisionConfig(section(json, 'vision_config'), 'CLIP vision_config'), projectionDim, withProjection: true },
    projectionDim,
    logitScaleInitValue: configFloat(json, 'logit_scale_init_value', 2.6592, 'CLIP config'),
  };
}

export interface ClipOutput {
  /** [B, projectionDim] unit-length text embeddings. */
  textEmbeds: Tensor;
  /** [B', projectionDim] unit-length image embeddings. */
  imageEmbeds: Tensor;
  /** [B, B'] = exp(logit_scale) · cos(text, image). */
  logitsPerText: Tensor;
  /** [B', B]: the transpose. */
  logitsPerImage: Tensor;
}

export class ClipModel extends Module {
  readonly text: ClipTextModel;
  readonly vision: ClipVisionModel;
  /** The temperature, stored as its log (a scalar). */
  readonly logitScale: Parameter;

  constructor(readonly config: ClipConfig) {
    super('');
    this.text = new ClipTextModel(config.text);
    this.vision = new ClipVisionModel(config.vision);
    this.logitScale = this.param('logit_scale', []);
  }

  /** Token ids [B, L] and pixels [B', channels, size, size] → embeddings and similarity logits. */
  forward(inputIds: Tensor, pixelValues: Tensor): ClipOutput {
    const textEmbeds = unitLength(this.text.forward(inputIds).textEmbeds!);
    const imageEmbeds = unitLength(this.vision.forward(pixelValues).imageEmbeds!);
    const logitsPerText = mul(matmul(textEmbeds, transposeLast(imageEmbeds)), exp(this.logitScale.tensor));
    return { textEmbeds, imageEmbeds, logitsPerText, logitsPerImage: transposeLast(logitsPerText) };
  }

  override init(rng: RandomSource): void {
    super.init(rng);
    this.logitScale.setValue(Float32Array.of(this.config.logitScaleInitValue));
  }
}

function unitLength(x: Tensor): Tensor {
  return div(x, sqrt(sum(mul(x, x), -1, true)));
}

/**
 * CLIP's symmetric contrastive loss for logits [N, N] whose diagonal holds the matching pairs: the
 * mean of the cross-entropies of picking the right image for each text and the right text for each
 * image. N must be a fixed size (training batches are).
 */
export function clipContrastiveLoss(logitsPerText: Tensor): Tensor {
  const [n, m] = logitsPerText.shape;
  if (typeof n !== 'number' || n !== m) throw new Error(`clipContrastiveLoss needs square logits of a fixed size, got ${logitsPerText}`);
  const identity = Tensor.constant(Float32Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0)), [n, n]);
  const matched = (logProbs: Tensor) => neg(mean(sum(mul(logProbs, identity), -1)));
  return mul(add(matched(logSoftmax(logitsPerText, -1)), matched(logSoftmax(logitsPerText, 0))), 0.5);
}

/** Loads a transformers CLIPModel folder (config.json + model.safetensors). */
export function loadClipModel(dir: string, options: { variant?: string } = {}): ClipModel {
  const json = readConfigJson(dir);
  const path = join(dir, 'config.json');
  // A text encoder alone (an SD model's text_encoder/) would otherwise fail binding with a list of
  // every vision tensor it lacks.
  if (json.vision_config === undefined) {
    const kind = Array.isArray(json.architectures) ? ` (${json.architectures.join(', ')})` : '';
    throw new Error(`${dir} is not a CLIP model with a vision tower${kind}: ${path} has no "vision_config"; CLIP training needs a CLIPModel folder (text and vision towers), or start from --config`);
  }
  const model = new ClipModel(inFile(path, () => clipConfig(json)));
  const file = openWeights(dir, 'model', options.variant);
  bindWeights(model.parameters(), file, { what: 'CLIP model', ignore: (name) => name.endsWith('embeddings.position_ids') });
  return model;
}
