// Loading a model for the library API: a path (default: the bundled model), the fallbacks the CLI
// uses for single files (tokenizer beside the file, else the bundled one), and the device.

import { checkExecutionProvider } from '../engine/providers.ts';
import { WEIGHT_DTYPES, type WeightDType } from '../engine/quantize.ts';
import { bundledTokenizer, defaultModelPath } from '../models/bundled.ts';
import { type LoadOptions, StableDiffusion } from './stable-diffusion.ts';

export interface PipelineOptions extends LoadOptions {
  /** ONNX Runtime execution provider: 'cpu' (default), 'cuda', …; one this install cannot run is refused here. */
  device?: string;
  /** 'q8': the UNet's and text encoder's linear and conv weights as int8 (the VAE stays fp32). Default 'fp32'. */
  dtype?: WeightDType;
}

/**
 * A Stable Diffusion model from a diffusers folder or a single-file `.safetensors` (the bundled
 * model without a path). Only configs are read here; weights stay in their files until a session
 * needs them.
 */
export async function loadPipeline(path?: string, options: PipelineOptions = {}): Promise<StableDiffusion> {
  const { device, dtype, ...load } = options;
  if (device !== undefined && device !== 'cpu') checkExecutionProvider(device);
  if (dtype !== undefined && !WEIGHT_DTYPES.includes(dtype)) throw new Error(`dtype must be one of ${WEIGHT_DTYPES.join(', ')}, got ${dtype}`);
  const run = { ...load.run, ...(device !== undefined ? { executionProvider: device } : {}), ...(dtype !== undefined ? { dtype } : {}) };
  return StableDiffusion.load(path ?? defaultModelPath(), { defaultTokenizer: bundledTokenizer, ...load, run });
}
