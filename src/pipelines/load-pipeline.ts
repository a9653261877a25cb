// Loading a model for the library API: a path (default: the bundled model), the fallbacks the CLI
// uses for single files (tokenizer beside the file, else the bundled one), and the device.

import { checkExecutionProvider } from '../engine/providers.ts';
import { bundledTokenizer, defaultModelPath } from '../models/bundled.ts';
import { type LoadOptions, StableDiffusion } from './stable-diffusion.ts';

export interface PipelineOptions extends LoadOptions {
  /** ONNX Runtime execution provider: 'cpu' (default), 'cuda', …; one this install cannot run is refused here. */
  device?: string;
}

/**
 * A Stable Diffusion model from a diffusers folder or a single-file `.safetensors` (the bundled
 * model without a path). Only configs are read here; weights stay in their files until a session
 * needs them.
 */
export async function loadPipeline(path?: string, options: PipelineOptions = {}): Promise<StableDiffusion> {
  const { device, ...load } = options;
  if (device !== undefined && device !== 'cpu') checkExecutionProvider(device);
  const run = { ...load.run, ...(device !== undefined ? { executionProvider: device } : {}) };
  return StableDiffusion.load(path ?? defaultModelPath(), { defaultTokenizer: bundledTokenizer, ...load, run });
}
