// CLIP's contrastive objective (Radford et al. 2021) for a batch of N matching caption–image pairs:
// both towers embed, embeddings are L2-normalised, the N×N cosine logits are scaled by the learned
// temperature exp(logit_scale), and a symmetric cross-entropy asks each caption to pick its own
// image and each image its own caption (the identity is the target).

import { Tensor } from '../engine/index.ts';
import { type ClipModel, clipContrastiveLoss } from '../models/clip.ts';

export interface ClipLoss {
  loss: Tensor;
  /** [N, N] = exp(logit_scale)·cos(caption i, image j). */
  logitsPerText: Tensor;
}

/** Graph inputs `input_ids` int64 [N, length] and `pixel_values` [N, 3, size, size] for a fixed batch N. */
export function clipInputs(model: ClipModel, batch: number, length: number): { inputIds: Tensor; pixelValues: Tensor } {
  const size = model.config.vision_config.image_size;
  return {
    inputIds: Tensor.input('input_ids', [batch, length], 'int64'),
    pixelValues: Tensor.input('pixel_values', [batch, model.config.vision_config.num_channels, size, size]),
  };
}

export function clipLoss(model: ClipModel, inputIds: Tensor, pixelValues: Tensor): ClipLoss {
  const { logitsPerText } = model.forward(inputIds, pixelValues);
  return { loss: clipContrastiveLoss(logitsPerText), logitsPerText };
}
