// A loaded Stable Diffusion model: tokenizer, text encoder, UNet, VAE and scheduler config, from a
// diffusers folder or a single-file checkpoint, with the three model calls a pipeline makes:
// encode prompts, predict noise (with classifier-free guidance), and decode latents.

import { type CompiledGraph, type RunOptions, Tensor, compile, sym } from '../engine/index.ts';
import { compileClipText, encodePrompts } from '../models/clip-text.ts';
import { type ControlNetModel, controlResidualName } from '../models/controlnet.ts';
import { compileControlNet } from './controlnet.ts';
import { type LoadModelOptions, type StableDiffusionComponents, loadStableDiffusion } from '../models/load.ts';
import type { AttentionHook, UNet2DConditionModel } from '../models/unet.ts';
import { type Shape4, VaeRunner } from '../models/vae-runner.ts';
import { vaeDownscale } from '../models/vae.ts';

export interface LoadOptions extends LoadModelOptions {
  run?: RunOptions;
  /**
   * Free each model's session as soon as a generation is done with it (text encoder before the
   * UNet runs, UNet before the VAE decodes): SD 1.5 at 512² then peaks at ~4 GB instead of ~6 GB.
   * For one-shot use (the CLI); a server that generates again keeps its sessions.
   */
  releaseSessions?: boolean;
}

/** An attention hook traced into the UNet, with the graph inputs it adds and the outputs it collects. */
export interface UNetGraphExtras {
  hook?: AttentionHook;
  /** Adds one graph input per ControlNet residual (named as the ControlNet graph's outputs). */
  controlResiduals?: boolean;
  inputs?: Tensor[];
  /** Called after tracing: the tensors the hook gathered, as named graph outputs. */
  outputs?: () => Record<string, Tensor>;
}

export type Feeds = Record<string, { data: Float32Array; shape: number[] }>;

/** Per-job graphs a pipeline keeps (each a UNet session's weights and buffers). */
const KEPT_GRAPHS = 3;

export class StableDiffusion {
  readonly vaeRunner: VaeRunner;
  /** The plain UNet per context length (77 · chunks of a long prompt). */
  private readonly unetGraphs = new Map<number, Promise<CompiledGraph>>();
  private controlledUNetGraph: Promise<CompiledGraph> | undefined;
  private readonly controlNetGraphs = new Map<ControlNetModel, Promise<CompiledGraph>>();
  private readonly textEncoderGraphs = new Map<number | undefined, Promise<CompiledGraph>>();
  /** Per-job UNet graphs (attention-controlled, null-text steps), most recently used first. */
  private keptGraphs: CompiledGraph[] = [];

  constructor(
    readonly components: StableDiffusionComponents,
    readonly run: RunOptions = {},
    readonly releaseSessions = false,
  ) {
    this.vaeRunner = new VaeRunner(components.vae, run);
  }

  static load(path: string, options: LoadOptions = {}): StableDiffusion {
    return new StableDiffusion(loadStableDiffusion(path, options), options.run, options.releaseSessions);
  }

  get name(): string {
    return this.components.name;
  }

  /** Latent channels and the VAE's downscale factor: latents are [B, channels, H/f, W/f]. */
  get latentChannels(): number {
    return this.components.unet.config.in_channels;
  }

  /** The VAE's downscale factor f (8 for Stable Diffusion): images of H×W have latents of H/f × W/f. */
  get vaeScaleFactor(): number {
    return vaeDownscale(this.components.vae.config);
  }

  /** The image side the UNet was trained for, as diffusers chooses it: sample_size · f (SD 1.5: 512). */
  get defaultSize(): number {
    return this.components.unet.config.sample_size * this.vaeScaleFactor;
  }

  get contextShape(): [number, number] {
    return [this.components.tokenizer.modelMaxLength, this.components.textEncoder.config.hiddenSize];
  }

  /** [B, 77, C] token states for each prompt. */
  async encodePrompts(prompts: string[], clipSkip?: number): Promise<Float32Array> {
    const { tokenizer, textEncoder } = this.components;
    return (await encodePrompts(textEncoder, tokenizer, prompts, { clipSkip, graph: await this.textEncoder(clipSkip) })).data;
  }

  /** [rows, 77, C] token states for rows of ids of the tokenizer's length (BOS … EOS, padding). */
  async encodeTokenIds(ids: Int32Array, clipSkip?: number): Promise<Float32Array> {
    const [length] = this.contextShape;
    const out = await (await this.textEncoder(clipSkip)).run({ input_ids: { data: BigInt64Array.from(ids, (id) => BigInt(id)), shape: [ids.length / length, length] } });
    return out.last_hidden_state.data as Float32Array;
  }

  /** The text encoder's session for one clip skip (compiled on first use, held until released). */
  private textEncoder(clipSkip?: number): Promise<CompiledGraph> {
    let graph = this.textEncoderGraphs.get(clipSkip);
    if (!graph) {
      const { tokenizer, textEncoder } = this.components;
      graph = compileClipText(textEncoder, { length: tokenizer.modelMaxLength, clipSkip, run: this.run });
      this.textEncoderGraphs.set(clipSkip, graph);
    }
    return graph;
  }

  /** Frees the text encoder's sessions, every clip skip's (a later encode creates them again). */
  async releaseTextEncoder(): Promise<void> {
    const graphs = [...this.textEncoderGraphs.values()];
    this.textEncoderGraphs.clear();
    for (const graph of graphs) await (await graph).release();
  }

  /** Frees the UNet's sessions, plain, controlled and kept, and the ControlNets' (a later `unet()` creates it again). */
  async releaseUNet(): Promise<void> {
    const graphs = [...this.unetGraphs.values(), this.controlledUNetGraph, ...this.controlNetGraphs.values()];
    const kept = this.keptGraphs;
    this.unetGraphs.clear();
    this.controlledUNetGraph = undefined;
    this.controlNetGraphs.clear();
    this.keptGraphs = [];
    for (const graph of graphs) if (graph) await (await graph).release();
    for (const g of kept) await g.release();
  }

  /**
   * Holds a graph compiled for one job whose shape is fixed at trace time (a Prompt-to-Prompt UNet
   * at one size and batch): the next job of that shape reuses its session, and only the
   * KEPT_GRAPHS most recently used stay, so a server that edits at many sizes does not grow.
   */
  async keep(compiled: Promise<CompiledGraph>): Promise<CompiledGraph> {
    // The new graph replaces a kept one of the same session (which it also holds): it carries this
    // job's trainable parameters (a null-text embedding), the old one the previous job's.
    const graph = await compiled;
    const same = this.keptGraphs.find((g) => g.session === graph.session);
    this.keptGraphs = [graph, ...this.keptGraphs.filter((g) => g !== same)];
    if (same) await same.release();
    for (const old of this.keptGraphs.splice(KEPT_GRAPHS)) await old.release();
    return graph;
  }

  /** The plain UNet as one session with symbolic batch and size (compiled on first use), for `tokens` context positions. */
  unet(tokens = this.contextShape[0]): Promise<CompiledGraph> {
    let graph = this.unetGraphs.get(tokens);
    if (!graph) {
      graph = compileUNet(this.components.unet, [tokens, this.contextShape[1]], this.run);
      this.unetGraphs.set(tokens, graph);
    }
    return graph;
  }

  /** The UNet with ControlNet residual inputs (compiled on first use; the plain graph is separate). */
  controlledUNet(): Promise<CompiledGraph> {
    this.controlledUNetGraph ??= compileUNet(this.components.unet, this.contextShape, this.run, { controlResiduals: true });
    return this.controlledUNetGraph;
  }

  /** One ControlNet's session (compiled on first use, held until `releaseUNet`). */
  controlNet(net: ControlNetModel): Promise<CompiledGraph> {
    let graph = this.controlNetGraphs.get(net);
    if (!graph) {
      graph = compileControlNet(net, this.contextShape, this.run);
      this.controlNetGraphs.set(net, graph);
    }
    return graph;
  }

  /** ε (or v) for a batch of latents at one timestep, with context states [B, 77 · chunks, C]. */
  async predictNoise(graph: CompiledGraph, latents: Float32Array, shape: Shape4, timestep: number, context: Float32Array, feeds: Feeds = {}) {
    const [b] = shape;
    const out = await graph.run({
      sample: { data: latents, shape },
      timestep: { data: new Float32Array(b).fill(timestep), shape: [b] },
      encoder_hidden_states: { data: context, shape: [b, context.length / (b * this.contextShape[1]), this.contextShape[1]] },
      ...feeds,
    });
    return out;
  }
}

/** Traces and compiles the UNet: inputs sample, timestep, encoder_hidden_states; output noise_pred. */
export async function compileUNet(unet: UNet2DConditionModel, context: [number, number], run: RunOptions, extras?: UNetGraphExtras): Promise<CompiledGraph> {
  const batch = sym('B');
  const sample = Tensor.input('sample', [batch, unet.config.in_channels, sym('H'), sym('W')]);
  const timestep = Tensor.input('timestep', [batch]);
  const states = Tensor.input('encoder_hidden_states', [batch, ...context]);
  const residuals: Tensor[] = [];
  const controlResidual = (feature: Tensor, index: number | 'mid') => {
    residuals.push(Tensor.input(controlResidualName(index), feature.shape));
    return residuals.at(-1)!;
  };
  const noise = unet.forward(sample, timestep, states, { attentionHook: extras?.hook, controlResidual: extras?.controlResiduals ? controlResidual : undefined });
  return compile({ inputs: [sample, timestep, states, ...(extras?.inputs ?? []), ...residuals], outputs: { noise_pred: noise, ...extras?.outputs?.() } }, run);
}
