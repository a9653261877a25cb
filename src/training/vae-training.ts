// Training an AutoencoderKL on a folder of images: batches of pixels in [-1, 1] in a seeded order,
// optional random flips, the reparameterisation noise from the same Generator.

import { type RunOptions } from '../engine/index.ts';
import { ShuffledBatches, type BatchOrderState } from '../data/batches.ts';
import type { ImageFolderDataset } from '../data/folder.ts';
import type { AutoencoderKL } from '../models/vae.ts';
import { compileTrainStep } from './train-step.ts';
import type { TrainingTask } from './trainer.ts';
import { type VaeLossOptions, vaeInputs, vaeLoss } from './vae-loss.ts';

export interface VaeTrainingOptions extends VaeLossOptions {
  batch: number;
  flip?: boolean;
  /**
   * Train only the decoder (and post_quant_conv), the encoder frozen: latents stay what they were,
   * so a UNet trained on them keeps working — how Stable Diffusion's VAE decoders were fine-tuned.
   */
  decoderOnly?: boolean;
  run?: RunOptions;
}

/** The parameters that turn latents into pixels. */
export function isDecoderParameter(name: string): boolean {
  return name.startsWith('decoder.') || name.startsWith('post_quant_conv.');
}

/** The VAE's parameters (or only its decoder's) trained; the step reports `reconstruction` and `kl` as metrics. */
export async function vaeTrainingTask(vae: AutoencoderKL, data: ImageFolderDataset, options: VaeTrainingOptions): Promise<TrainingTask> {
  const { batch } = options;
  const size = data.resolution;
  const inputs = vaeInputs(vae, batch, size);
  const out = vaeLoss(vae, inputs.image, inputs.eps, options);
  const step = await compileTrainStep({
    inputs: [inputs.image, inputs.eps],
    loss: out.loss,
    params: options.decoderOnly ? vae.parameters().filter((p) => isDecoderParameter(p.name)) : vae.parameters(),
    metrics: { reconstruction: out.reconstruction, kl: out.kl },
    run: options.run,
  });
  const order = new ShuffledBatches(data.length, batch);
  const epsShape = inputs.eps.shape as number[];
  const epsSize = epsShape.reduce((a, b) => a * b, 1);
  return {
    step,
    nextBatch(rng) {
      const { pixels, shape } = data.batch(order.next(rng), rng, options.flip);
      return { image: { data: pixels, shape }, eps: { data: rng.randn(epsSize), shape: epsShape } };
    },
    dataState: () => order.state(),
    loadDataState: (s) => order.loadState(s as BatchOrderState),
  };
}
