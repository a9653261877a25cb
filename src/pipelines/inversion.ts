// Inverting a real picture so that it can be edited: DDIM inversion, then null-text inversion
// (Mokady et al. 2022, "Null-text Inversion for Editing Real Images using Guided Diffusion Models").
//
// 1. DDIM inversion runs the deterministic sampler backwards with the source prompt and no
//    guidance: z_0 (the VAE's encoding) → z_1 → … → z_T, the noise that regenerates the picture.
// 2. Sampled with guidance w > 1 from z_T, that trajectory drifts. Null-text inversion pins it: at
//    each step it tunes the unconditional ("null") text embedding ∅_t, starting from the previous
//    step's, with Adam on ‖z_{t−1}(z̄_t, ∅_t) − z*_{t−1}‖², the gradient flowing back through the
//    UNet and the DDIM step (our autodiff, w.r.t. the embedding as a trainable graph input). Guided
//    sampling with the tuned ∅_t reproduces the picture; an edit then uses them in place of "".

import { AdamW, type CompiledGraph, Parameter, Tensor, add, compile, grad, mean, mul, slice, sub } from '../engine/index.ts';
import { type RgbImage, imageToTensor } from '../io/image.ts';
import type { Shape4 } from '../models/vae-runner.ts';
import { DDIMScheduler, ddimTransfer } from '../schedulers/ddim.ts';
import { guide, guideTensor } from './guidance.ts';
import { throwIfAborted } from '../engine/abort.ts';
import { Generator } from '../engine/random.ts';
import { denoise, stepCallback } from './generate.ts';
import { type Feeds, StableDiffusion } from './stable-diffusion.ts';
import { type PromptEncodeOptions, encodePromptEmbeddings } from './prompt-embeddings.ts';

export interface NullTextOptions {
  /** Adam iterations per sampling step; default 10. */
  innerSteps?: number;
  /** Adam's learning rate at the first step, falling by 1 % of it per step; default 1e-2. */
  learningRate?: number;
  /** A step stops early once its loss is below epsilon + step · 2e-5; default 1e-5. */
  epsilon?: number;
}

export interface InversionOptions extends PromptEncodeOptions {
  /** The picture's description: the source prompt of later edits. */
  prompt: string;
  /** The picture, already at the size to work at (multiples of 8). */
  image: RgbImage;
  steps: number;
  /** The guidance the edits will sample with; null-text inversion tunes for it. */
  guidance: number;
  /** The starting unconditional prompt; default "". */
  negativePrompt?: string;
  clipSkip?: number;
  /** Null-text optimisation after DDIM inversion (default on); false keeps plain DDIM inversion. */
  nullText?: NullTextOptions | false;
  /** Checked before every UNet step and null-text iteration: an aborted signal stops with an AbortError. */
  signal?: AbortSignal;
  /** Called after every inversion step (`onStep` is the older name of the same callback). */
  onProgress?: (progress: InversionProgress) => void;
  onStep?: (progress: InversionProgress) => void;
}

/** One step of DDIM inversion (z_t → z_t+1), or of null-text inversion with its final loss. */
export interface InversionProgress {
  phase: 'ddim' | 'null-text';
  step: number;
  total: number;
  timestep: number;
  loss?: number;
}

export interface InvertedImage {
  prompt: string;
  steps: number;
  guidance: number;
  /** [1, C, h, w] */
  shape: Shape4;
  /** z_0 … z_T along the DDIM inversion; z_T is the noise that regenerates the picture. */
  trajectory: Float32Array[];
  /** [1, 77, C] per sampling step: the tuned null-text embeddings, or the plain one repeated. */
  uncondEmbeddings: Float32Array[];
  /** Per sampling step, the null-text loss when the step finished (empty without null-text). */
  losses: number[];
}

export const NULL_TEXT_DEFAULTS = { innerSteps: 10, learningRate: 1e-2, epsilon: 1e-5 };

export async function invertImage(sd: StableDiffusion, o: InversionOptions): Promise<InvertedImage> {
  if (sd.isSdxl) throw new Error(`image inversion (DDIM and null-text) is not supported on SDXL models yet (${sd.name})`);
  if (sd.embedsGuidance) throw new Error(`image inversion (DDIM and null-text) needs classifier-free guidance; ${sd.name} is LCM-distilled (its UNet takes the guidance as time_cond_proj_dim input)`);
  const { width, height } = o.image;
  if (width % 8 || height % 8) throw new Error(`inversion: the picture must be a multiple of 8 in size, got ${width}×${height}`);
  const pixels = imageToTensor([o.image], '-1..1');
  const encoded = await sd.imageToLatents(pixels, [1, 3, height, width]);
  // Long prompts: the null-text embeddings have the prompt's 77·chunks positions.
  const text = await encodePromptEmbeddings(sd, [o.prompt], [o.negativePrompt ?? ''], o);
  const cond = text.cond;
  const uncond = text.uncond!;
  const scheduler = ddim(sd, o.steps);
  const onStep = stepCallback(o);
  const trajectory = await ddimInversion(sd, scheduler, encoded.data, encoded.shape, cond, onStep, o.signal);
  const base = { prompt: o.prompt, steps: o.steps, guidance: o.guidance, shape: encoded.shape, trajectory };
  if (o.nullText === false || o.guidance <= 1) return { ...base, uncondEmbeddings: scheduler.timesteps.map(() => uncond), losses: [] };
  return { ...base, ...(await nullTextInversion(sd, scheduler, trajectory, encoded.shape, cond, uncond, o.guidance, o.nullText ?? {}, onStep, o.signal)) };
}

/** A DDIM scheduler on the model's schedule with `steps` steps. */
export function ddim(sd: StableDiffusion, steps: number): DDIMScheduler {
  const scheduler = new DDIMScheduler(sd.components.schedulerConfig);
  scheduler.setTimesteps(steps);
  return scheduler;
}

/** z_0 → z_T with the prompt alone: ε is taken at the step's upper timestep from the latents below it. */
export async function ddimInversion(sd: StableDiffusion, scheduler: DDIMScheduler, clean: Float32Array, shape: Shape4, cond: Float32Array, onStep?: InversionOptions['onStep'], signal?: AbortSignal): Promise<Float32Array[]> {
  const unet = await sd.unet(contextTokens(sd, cond, 1));
  const trajectory = [clean];
  const ascending = [...scheduler.timesteps].reverse();
  for (const [i, t] of ascending.entries()) {
    throwIfAborted(signal, 'inversion');
    const z = trajectory[i];
    const eps = (await sd.predictNoise(unet, z, shape, t, cond)).noise_pred.data as Float32Array;
    const from = scheduler.alphaProdAt(scheduler.previousTimestep(t));
    trajectory.push(ddimTransfer(z, eps, from, scheduler.alphaProdAt(t), scheduler.config.predictionType));
    await onStep?.({ phase: 'ddim', step: i + 1, total: ascending.length, timestep: t });
  }
  return trajectory;
}

/** Tunes one null-text embedding per sampling step so that guided DDIM sampling retraces `trajectory`. */
export async function nullTextInversion(
  sd: StableDiffusion,
  scheduler: DDIMScheduler,
  trajectory: readonly Float32Array[],
  shape: Shape4,
  cond: Float32Array,
  uncond: Float32Array,
  guidance: number,
  options: NullTextOptions,
  onStep?: InversionOptions['onStep'],
  signal?: AbortSignal,
): Promise<{ uncondEmbeddings: Float32Array[]; losses: number[] }> {
  const { innerSteps, learningRate, epsilon } = { ...NULL_TEXT_DEFAULTS, ...options };
  if (scheduler.config.predictionType !== 'epsilon') throw new Error('null-text inversion needs an ε-prediction model');
  const tokens = contextTokens(sd, uncond, 1);
  const embedding = new Parameter('null_text_embedding', [1, tokens, sd.contextShape[1]]);
  embedding.setValue(uncond);
  const [step, unet] = await Promise.all([compileNullTextStep(sd, shape, embedding), sd.unet(tokens)]);
  const steps = scheduler.timesteps.length;
  const uncondEmbeddings: Float32Array[] = [];
  const losses: number[] = [];
  let latents = trajectory[steps];
  for (const [i, t] of scheduler.timesteps.entries()) {
    const target = trajectory[steps - i - 1];
    const epsCond = (await sd.predictNoise(unet, latents, shape, t, cond)).noise_pred.data as Float32Array;
    const alpha = scheduler.alphaProdAt(t);
    const alphaPrev = scheduler.alphaProdAt(scheduler.previousTimestep(t));
    // z_{t−1} = √ᾱ' x̂₀ + √(1−ᾱ') ε with x̂₀ = (z_t − √(1−ᾱ) ε)/√ᾱ: linear in (z_t, ε).
    const sampleCoeff = Math.sqrt(alphaPrev / alpha);
    const epsCoeff = Math.sqrt(1 - alphaPrev) - Math.sqrt(alphaPrev) * Math.sqrt((1 - alpha) / alpha);
    const feeds: Feeds = {
      sample: { data: latents, shape: [...shape] },
      timestep: { data: Float32Array.of(t), shape: [1] },
      noise_pred_cond: { data: epsCond, shape: [...shape] },
      target: { data: target, shape: [...shape] },
      ddim_coefficients: { data: Float32Array.of(sampleCoeff, epsCoeff), shape: [2] },
      guidance: { data: Float32Array.of(guidance), shape: [1] },
    };
    const adam = new AdamW([embedding], { lr: learningRate, weightDecay: 0 });
    let loss = NaN;
    for (let j = 0; j < innerSteps; j++) {
      throwIfAborted(signal, 'null-text inversion');
      const out = await step.run(feeds);
      loss = (out.loss.data as Float32Array)[0];
      adam.step([out.grad.data as Float32Array], learningRate * (1 - i / 100));
      if (loss < epsilon + i * 2e-5) break;
    }
    losses.push(loss);
    const tuned = new Float32Array(embedding.value());
    uncondEmbeddings.push(tuned);
    const epsUncond = (await sd.predictNoise(unet, latents, shape, t, tuned)).noise_pred.data as Float32Array;
    const eps = guide(epsUncond, epsCond, guidance);
    latents = scheduler.step(eps, t, latents, { eta: 0 }).prevSample;
    await onStep?.({ phase: 'null-text', step: i + 1, total: steps, timestep: t, loss });
  }
  return { uncondEmbeddings, losses };
}

/**
 * loss = mean((a·z_t + b·ε̃ − z*)²), ε̃ = ε(z_t, ∅) + w·(ε_cond − ε(z_t, ∅)), and its gradient with
 * respect to the null-text embedding ∅ (the trainable input `null_text_embedding`).
 */
export async function compileNullTextStep(sd: StableDiffusion, shape: Shape4, embedding: Parameter): Promise<CompiledGraph> {
  const sample = Tensor.input('sample', shape);
  const timestep = Tensor.input('timestep', [1]);
  const epsCond = Tensor.input('noise_pred_cond', shape);
  const target = Tensor.input('target', shape);
  const coefficients = Tensor.input('ddim_coefficients', [2]);
  const guidance = Tensor.input('guidance', [1]);
  const epsUncond = sd.components.unet.forward(sample, timestep, embedding.tensor);
  const eps = guideTensor(epsUncond, epsCond, guidance);
  const previous = add(mul(sample, slice(coefficients, 0, 0, 1)), mul(eps, slice(coefficients, 0, 1, 2)));
  const error = sub(previous, target);
  const loss = mean(mul(error, error));
  const [gradient] = grad(loss, [embedding.tensor]);
  const inputs = [sample, timestep, epsCond, target, coefficients, guidance];
  return sd.keep(compile({ inputs, outputs: { loss, grad: gradient }, trainable: [...sd.trainable, embedding] }, sd.run));
}

/** Guided DDIM sampling from the inversion's z_T with its per-step null-text embeddings: should give back z_0. */
export async function reconstruct(sd: StableDiffusion, inversion: InvertedImage, cond?: Float32Array): Promise<Float32Array> {
  const scheduler = ddim(sd, inversion.steps);
  const chunks = contextTokens(sd, inversion.uncondEmbeddings[0]!, 1) / sd.contextShape[0];
  const text = cond ?? (await encodePromptEmbeddings(sd, [inversion.prompt], undefined, { minChunks: chunks })).cond;
  // The shared loop's context is [uncond; cond]: each step's tuned null text replaces its uncond half.
  const nullText = (i: number): Feeds => {
    const data = new Float32Array(2 * text.length);
    data.set(inversion.uncondEmbeddings[i]);
    data.set(text, text.length);
    return { encoder_hidden_states: { data, shape: [2, contextTokens(sd, text, 1), sd.contextShape[1]] } };
  };
  return denoise(sd, await sd.unet(contextTokens(sd, text, 1)), {
    scheduler,
    timesteps: scheduler.timesteps,
    latents: inversion.trajectory[inversion.steps],
    shape: inversion.shape,
    cond: text,
    uncond: inversion.uncondEmbeddings[0],
    guidance: inversion.guidance,
    rng: new Generator(0), // DDIM at η = 0 draws nothing
    eta: 0,
    feeds: inversion.guidance > 1 ? nullText : undefined,
  });
}

export interface ReconstructionErrors {
  /** Mean squared error of the reconstructed latents against z_0. */
  latentMse: number;
  /** PSNR (dB, pixels in [0, 1]) of the decoded reconstruction against the picture. */
  psnr: number;
  /** The same against the VAE's own round trip decode(z_0): the inversion's share of the error. */
  psnrAutoencoded: number;
}

/** How well guided sampling from `inversion` gives `image` back. */
export async function reconstructionErrors(sd: StableDiffusion, inversion: InvertedImage, image: RgbImage): Promise<ReconstructionErrors> {
  const latents = await reconstruct(sd, inversion);
  const clean = inversion.trajectory[0];
  const both = new Float32Array(2 * latents.length);
  both.set(latents);
  both.set(clean, latents.length);
  const decoded = (await sd.decodeLatents(both, [2, ...(inversion.shape.slice(1) as [number, number, number])])).data;
  const half = decoded.length / 2;
  return {
    latentMse: meanSquaredError(latents, clean),
    psnr: psnr(decoded.subarray(0, half), image.data),
    psnrAutoencoded: psnr(decoded.subarray(0, half), decoded.subarray(half)),
  };
}

function meanSquaredError(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] - b[i]) ** 2;
  return sum / a.length;
}

/** Peak signal-to-noise ratio in dB of values in [0, 1]. */
export function psnr(a: Float32Array, b: Float32Array): number {
  return 10 * Math.log10(1 / meanSquaredError(a, b));
}

/** Context positions (77 · chunks) of `batch` prompts' states. */
function contextTokens(sd: StableDiffusion, states: Float32Array, batch: number): number {
  return states.length / (batch * sd.contextShape[1]);
}
