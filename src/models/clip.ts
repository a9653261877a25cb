// CLIP (transformers' CLIPModel): the text and image towers projected into one embedding space,
// compared by cosine similarity scaled by a learned temperature. Trained contrastively: in a batch
// of N matching text–image pairs, each text should pick out its own image among N, and vice versa.

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
import { ClipTextModel } from './clip-text.ts';
import { ClipVisionModel } from './clip-vision.ts';
import type { ClipConfig } from './checkpoint/clip-config.ts';

export type { ClipConfig } from './checkpoint/clip-config.ts';

export interface ClipOutput {
  /** [B, projection_dim] unit-length text embeddings. */
  textEmbeds: Tensor;
  /** [B', projection_dim] unit-length image embeddings. */
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
    this.text = new ClipTextModel(config.text_config);
    this.vision = new ClipVisionModel(config.vision_config);
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
    this.logitScale.setValue(Float32Array.of(this.config.logit_scale_init_value));
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
