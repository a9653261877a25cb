// Training CLIP (both towers, the projections and the temperature) contrastively on a folder of
// captioned images. Every batch is N pairs; the other N − 1 items are each pair's negatives.

import { type RunOptions, compile } from '../engine/index.ts';
import { ShuffledBatches, type BatchOrderState } from '../data/batches.ts';
import type { ImageFolderDataset } from '../data/folder.ts';
import type { ClipModel } from '../models/clip.ts';
import type { ClipTokenizer } from '../tokenizers/clip.ts';
import { clipInputs, clipLoss } from './clip-loss.ts';
import { compileTrainStep } from './train-step.ts';
import type { TrainingTask } from './trainer.ts';

export interface ClipTrainingOptions {
  batch: number;
  flip?: boolean;
  run?: RunOptions;
}

/** Token ids int64 [N, length], padded and truncated as the tokenizer does for SD. */
export function tokenIds(tokenizer: ClipTokenizer, captions: readonly string[], length: number): { data: BigInt64Array; shape: number[] } {
  const { inputIds } = tokenizer.call([...captions], { maxLength: length });
  const data = new BigInt64Array(captions.length * length);
  inputIds.forEach((row, b) => row.forEach((id, l) => (data[b * length + l] = BigInt(id))));
  return { data, shape: [captions.length, length] };
}

function checkResolution(model: ClipModel, data: ImageFolderDataset): void {
  const size = model.config.vision_config.image_size;
  if (data.resolution !== size) throw new Error(`CLIP's vision tower takes ${size}×${size} images; the data set was read at ${data.resolution}`);
}

export async function clipTrainingTask(model: ClipModel, tokenizer: ClipTokenizer, data: ImageFolderDataset, options: ClipTrainingOptions): Promise<TrainingTask> {
  checkResolution(model, data);
  const { batch } = options;
  if (batch < 2) throw new Error('contrastive training needs batches of at least 2 pairs');
  const length = model.config.text_config.max_position_embeddings;
  const inputs = clipInputs(model, batch, length);
  const { loss } = clipLoss(model, inputs.inputIds, inputs.pixelValues);
  const step = await compileTrainStep({ inputs: [inputs.inputIds, inputs.pixelValues], loss, params: model.parameters(), run: options.run });
  if (batch > data.length) throw new Error(`a contrastive batch of ${batch} needs at least ${batch} images; the data set has ${data.length}`);
  const order = new ShuffledBatches(data.length, batch);
  return {
    step,
    nextBatch(rng) {
      const { pixels, captions, shape } = data.batch(order.next(rng), rng, options.flip);
      return { input_ids: tokenIds(tokenizer, captions, length), pixel_values: { data: pixels, shape } };
    },
    dataState: () => order.state(),
    loadDataState: (s) => order.loadState(s as BatchOrderState),
  };
}

/**
 * Image→text retrieval accuracy over the first `limit` items: the fraction of images whose most
 * similar caption (among those items' captions) is their own. Chance is 1 / (distinct captions).
 */
export async function clipRetrievalAccuracy(model: ClipModel, tokenizer: ClipTokenizer, data: ImageFolderDataset, limit = 64, run?: RunOptions): Promise<number> {
  checkResolution(model, data);
  const n = Math.min(limit, data.length);
  const length = model.config.text_config.max_position_embeddings;
  const inputs = clipInputs(model, n, length);
  const { logitsPerImage } = model.forward(inputs.inputIds, inputs.pixelValues);
  // The weights are inputs fed as they stand: validation during training reuses one session.
  const graph = await compile({ inputs: [inputs.inputIds, inputs.pixelValues], outputs: { logits: logitsPerImage }, trainable: model.parameters() }, run);
  const all = Array.from({ length: n }, (_, i) => i);
  const { pixels, captions, shape } = data.batch(all);
  const out = await graph.run({ input_ids: tokenIds(tokenizer, captions, length), pixel_values: { data: pixels, shape } });
  const logits = out.logits.data as Float32Array; // [images, captions]
  let correct = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < n; j++) if (logits[i * n + j] > logits[i * n + best]) best = j;
    if (captions[best] === captions[i]) correct++;
  }
  return correct / n;
}
