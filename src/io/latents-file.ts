// `--latents FILE`: initial noise as a safetensors file with an fp32 tensor "latents"
// [B, C, H/f, W/f]. Everything wrong with it is an error naming the file, before any work: a
// NaN would draw a black picture, a wrong size would fail deep inside ONNX Runtime.
// For inpainting it may also hold the ε of the VAE posterior samples diffusers draws from its
// generator, of the same shape: "masked_image_noise" (the masked picture's) and "image_noise"
// (the picture's, used by 4-channel UNets and strength < 1). And "step_noise" [S, B, C, H/f, W/f]:
// the noise each stochastic sampler step draws, in order (zeros where a step draws none), used
// instead of drawing it, so a recorded Euler-a, LCM, DDPM or DDIM-η run is reproduced exactly.

import { existsSync } from 'node:fs';
import { firstNonFinite } from '../engine/finite.ts';
import { readSafetensors } from '../engine/safetensors.ts';

export interface LatentsFile {
  data: Float32Array;
  /** [B, C, h, w] */
  shape: [number, number, number, number];
  /** "masked_image_noise", when the file has it. */
  maskedImageNoise?: Float32Array;
  /** "image_noise", when the file has it. */
  imageNoise?: Float32Array;
  /** Row i: the noise sampler step i draws, [B, C, h, w] (from "step_noise" [S, B, C, h, w]). */
  stepNoise?: Float32Array[];
}

const NOISE_TENSORS = { maskedImageNoise: 'masked_image_noise', imageNoise: 'image_noise' } as const;

/** Reads and checks the file on its own: tensor name, dtype, rank, finite values. */
export function readLatentsFile(path: string): LatentsFile {
  if (!existsSync(path)) throw new Error(`--latents: no such file ${path}`);
  const tensors = readSafetensors(path);
  const latents = tensors.get('latents');
  if (!latents) throw new Error(`--latents ${path} has no tensor named "latents" (found: ${[...tensors.keys()].join(', ') || 'none'})`);
  if (latents.dtype !== 'F32' || latents.shape.length !== 4 || latents.shape.some((d) => d < 1)) {
    throw new Error(`--latents ${path}: tensor "latents" must be fp32 [B, C, H/f, W/f] with no empty side, found ${latents.dtype} [${latents.shape.join(', ')}]`);
  }
  const data = latents.data as Float32Array;
  const bad = firstNonFinite(data);
  if (bad >= 0) throw new Error(`--latents ${path}: tensor "latents" holds ${data[bad]} at index ${bad}; initial latents must be finite`);
  const file: LatentsFile = { data, shape: latents.shape as LatentsFile['shape'] };
  for (const [field, name] of Object.entries(NOISE_TENSORS) as [keyof typeof NOISE_TENSORS, string][]) {
    const t = tensors.get(name);
    if (!t) continue;
    if (t.dtype !== 'F32' || t.shape.join() !== latents.shape.join()) {
      throw new Error(`--latents ${path}: tensor "${name}" must be fp32 of the latents' shape [${latents.shape.join(', ')}], found ${t.dtype} [${t.shape.join(', ')}]`);
    }
    const noise = t.data as Float32Array;
    const at = firstNonFinite(noise);
    if (at >= 0) throw new Error(`--latents ${path}: tensor "${name}" holds ${noise[at]} at index ${at}; noise must be finite`);
    file[field] = noise;
  }
  const steps = tensors.get('step_noise');
  if (!steps) return file;
  if (steps.dtype !== 'F32' || steps.shape.length !== 5 || steps.shape[0] < 1 || steps.shape.slice(1).some((d, i) => d !== file.shape[i])) {
    throw new Error(`--latents ${path}: tensor "step_noise" must be fp32 [S, ${file.shape.join(', ')}] (one row of noise per sampler step, the shape of "latents"), found ${steps.dtype} [${steps.shape.join(', ')}]`);
  }
  const all = steps.data as Float32Array;
  const badNoise = firstNonFinite(all);
  if (badNoise >= 0) throw new Error(`--latents ${path}: tensor "step_noise" holds ${all[badNoise]} at index ${badNoise}; step noise must be finite`);
  file.stepNoise = Array.from({ length: steps.shape[0] }, (_, i) => all.subarray(i * data.length, (i + 1) * data.length));
  return file;
}

/** Checks that "step_noise" holds a row for each of the run's `steps` sampler steps. */
export function checkStepNoiseSteps(path: string, latents: LatentsFile, steps: number, sampler: string): void {
  const rows = latents.stepNoise?.length;
  if (rows !== undefined && rows < steps) {
    throw new Error(`--latents ${path}: tensor "step_noise" holds the noise of ${rows} sampler steps; this run (${sampler}) takes ${steps}`);
  }
}

/** Checks the latents against the model's latent channels (any latent size fits the UNet). */
export function checkLatentsFit(path: string, latents: LatentsFile, model: { channels: number }): void {
  const c = latents.shape[1];
  if (c !== model.channels) throw new Error(`--latents ${path}: tensor "latents" [${latents.shape.join(', ')}] has ${c} channels; this model's latents have ${model.channels}`);
}
