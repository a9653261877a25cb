// ControlNet in the sampling loop, as diffusers' StableDiffusionControlNetPipeline does it: at
// each step every active ControlNet sees the UNet's input batch (with CFG the whole [uncond, cond]
// batch, text states included), its residuals × conditioning scale are summed over the
// ControlNets and fed to the UNet graph that takes them (a second cached graph: the plain one is
// unchanged). Outside a ControlNet's [start, end] fraction of the steps it is skipped.

import { type CompiledGraph, type RunOptions, Tensor, compile, dimMul, sym } from '../engine/index.ts';
import { CANNY_DEFAULTS, type CannyOptions, canny } from '../io/canny.ts';
import { type RgbImage, imageToTensor, readImage } from '../io/image.ts';
import { type ControlNetModel, controlResidualName } from '../models/controlnet.ts';
import type { Shape4 } from '../models/vae-runner.ts';
import type { Feeds, StableDiffusion } from './stable-diffusion.ts';

export interface ControlNetUnit {
  model: ControlNetModel;
  /** The control image (edges, pose, depth …), RGB in [0, 1], at the output width × height. */
  image: RgbImage;
  /** diffusers' controlnet_conditioning_scale: the residuals are multiplied by it (default 1). */
  scale?: number;
  /** The fractions of the steps between which this ControlNet acts (diffusers' control_guidance_start / _end; 0 and 1). */
  start?: number;
  end?: number;
}

/** What turns an ordinary picture into a control image; 'none': it already is one. */
export const CONTROL_PREPROCESSORS = ['none', 'canny'] as const;
export type ControlPreprocessor = (typeof CONTROL_PREPROCESSORS)[number];

/**
 * A control image file (or its bytes) at the output size — stretched ('fill', diffusers' way, the
 * default) or scaled to cover and centre-cropped ('cover', the ControlNet extension's "Crop and
 * Resize") — then preprocessed.
 */
export async function readControlImage(source: string | Buffer, o: { width: number; height: number; fit?: 'fill' | 'cover'; preprocess?: ControlPreprocessor; canny?: CannyOptions }): Promise<RgbImage> {
  const image = await readImage(source, { width: o.width, height: o.height, fit: o.fit ?? 'fill' });
  return o.preprocess === 'canny' ? canny(image, o.canny) : image;
}

/** How a ControlNet was used, by name: what PNG parameters record. */
export interface ControlNetSettings {
  model: string;
  weight: number;
  /** How the control image met the output size (readControlImage; default 'fill'). */
  fit?: 'fill' | 'cover';
  start?: number;
  end?: number;
  preprocess?: ControlPreprocessor;
  cannyLow?: number;
  cannyHigh?: number;
}

/**
 * PNG parameters as AUTOMATIC1111's ControlNet extension writes them, one `ControlNet N` entry per
 * unit: `Module: canny, Model: …, Weight: 1, Resize Mode: Just Resize, Threshold A: 100, Threshold B: 200,
 * Guidance Start: 0, Guidance End: 1` (its resize modes: "Just Resize" stretches, "Crop and Resize" covers).
 */
export function controlNetLabels(units: readonly ControlNetSettings[] = []): Record<string, string> {
  const label = (c: ControlNetSettings) => {
    const module = c.preprocess ?? 'none';
    const thresholds = module === 'canny' ? `, Threshold A: ${c.cannyLow ?? CANNY_DEFAULTS.low}, Threshold B: ${c.cannyHigh ?? CANNY_DEFAULTS.high}` : '';
    const resize = c.fit === 'cover' ? 'Crop and Resize' : 'Just Resize';
    return `Module: ${module}, Model: ${c.model}, Weight: ${c.weight}, Resize Mode: ${resize}${thresholds}, Guidance Start: ${c.start ?? 0}, Guidance End: ${c.end ?? 1}`;
  };
  return Object.fromEntries(units.map((c, i) => [`ControlNet ${i}`, label(c)]));
}

/** Traces a ControlNet: inputs sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale [1]; one output per residual. */
export async function compileControlNet(net: ControlNetModel, context: [number, number], run: RunOptions): Promise<CompiledGraph> {
  const [batch, h, w] = [sym('B'), sym('H'), sym('W')];
  const f = net.conditioningDownscale;
  const sample = Tensor.input('sample', [batch, net.config.unet.in_channels, h, w]);
  const timestep = Tensor.input('timestep', [batch]);
  const states = Tensor.input('encoder_hidden_states', [batch, ...context]);
  const image = Tensor.input('controlnet_cond', [batch, net.config.conditioning_channels, dimMul(h, f), dimMul(w, f)]);
  const scale = Tensor.input('conditioning_scale', [1]);
  const { down, mid } = net.forward(sample, timestep, states, image, scale);
  const outputs = Object.fromEntries([...down.map((t, i) => [controlResidualName(i), t]), [controlResidualName('mid'), mid]]);
  return compile({ inputs: [sample, timestep, states, image, scale], outputs }, run);
}

/** diffusers' controlnet_keep: step i of n runs the ControlNet unless i/n < start or (i + 1)/n > end. */
export function controlActive(step: number, steps: number, start = 0, end = 1): boolean {
  return !(step / steps < start || (step + 1) / steps > end);
}

export interface ControlRun {
  /** The UNet graph that takes the residual inputs. */
  unet: CompiledGraph;
  /** The summed residual feeds for one step's UNet input, or undefined when no ControlNet acts at that step. */
  residuals: (stepIndex: number, sample: Float32Array, shape: Shape4, timestep: number, context: Float32Array) => Promise<Feeds | undefined>;
}

/**
 * Checks the units and prepares their control images for a UNet batch of `unetBatch` images
 * (twice the images with CFG: each half gets the same control image).
 */
export async function prepareControl(sd: StableDiffusion, units: readonly ControlNetUnit[], o: { unetBatch: number; width: number; height: number; steps: number; tokens?: number }): Promise<ControlRun> {
  const prepared = units.map((u, n) => {
    const what = `ControlNet ${n + 1}`;
    const { image, model } = u;
    const scale = u.scale ?? 1;
    const [start, end] = [u.start ?? 0, u.end ?? 1];
    if (!Number.isFinite(scale)) throw new Error(`${what}: the conditioning scale must be a finite number, got ${scale}`);
    if (!(start >= 0 && start < end && end <= 1)) throw new Error(`${what}: control start and end must satisfy 0 ≤ start < end ≤ 1, got ${start} and ${end}`);
    if (image.width !== o.width || image.height !== o.height) throw new Error(`${what}: the control image is ${image.width}×${image.height}; resize it to the output size ${o.width}×${o.height}`);
    const crossDim = model.config.unet.cross_attention_dim;
    if (crossDim.some((d) => d !== sd.contextShape[1])) throw new Error(`${what} was made for another kind of model: it attends to text states ${crossDim[0]} wide, this model's are ${sd.contextShape[1]}`);
    if (model.config.conditioning_channels !== 3) throw new Error(`${what}: the model takes ${model.config.conditioning_channels}-channel control images; only RGB (3) are supported`);
    const f = model.conditioningDownscale;
    if (o.width % f || o.height % f) throw new Error(`${what}: its conditioning embedding needs a size divisible by ${f}, got ${o.width}×${o.height}`);
    const pixels = imageToTensor(new Array(o.unetBatch).fill(image), '0..1');
    if (model.config.controlnet_conditioning_channel_order === 'bgr') reverseChannels(pixels, o.unetBatch, o.width * o.height);
    return { model, scale, start, end, pixels };
  });
  const unet = await sd.controlledUNet(o.tokens);
  return {
    unet,
    async residuals(stepIndex, sample, shape, timestep, context) {
      let sum: Feeds | undefined;
      for (const u of prepared) {
        if (!controlActive(stepIndex, o.steps, u.start, u.end)) continue;
        const channels = u.model.config.unet.in_channels;
        if (shape[1] !== channels) throw new Error(`a ControlNet takes latents of ${channels} channels; this UNet's input has ${shape[1]}`);
        const graph = await sd.controlNet(u.model, o.tokens);
        const out = await sd.predictNoise(graph, sample, shape, timestep, context, {
          controlnet_cond: { data: u.pixels, shape: [shape[0], 3, o.height, o.width] },
          conditioning_scale: { data: Float32Array.of(u.scale), shape: [1] },
        });
        const feeds = Object.fromEntries(Object.entries(out).map(([name, t]) => [name, { data: t.data as Float32Array, shape: [...t.shape] }]));
        sum = sum ? addFeeds(sum, feeds) : feeds;
      }
      return sum;
    },
  };
}

function addFeeds(a: Feeds, b: Feeds): Feeds {
  const out: Feeds = {};
  for (const [name, { data, shape }] of Object.entries(a)) {
    const other = b[name].data;
    out[name] = { data: data.map((v, i) => v + other[i]), shape };
  }
  return out;
}

/** RGB → BGR in place for N planar images of `plane` pixels. */
function reverseChannels(pixels: Float32Array, n: number, plane: number): void {
  for (let i = 0; i < n; i++) {
    const red = pixels.slice(i * 3 * plane, (i * 3 + 1) * plane);
    pixels.copyWithin(i * 3 * plane, (i * 3 + 2) * plane, (i * 3 + 3) * plane);
    pixels.set(red, (i * 3 + 2) * plane);
  }
}
