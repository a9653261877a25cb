// A loaded Stable Diffusion model: tokenizer, text encoder, UNet, VAE and scheduler config, from a
// diffusers folder or a single-file checkpoint, with the three model calls a pipeline makes:
// encode prompts, predict noise (with classifier-free guidance), and decode latents.

import { type CompiledGraph, type Dim, type Parameter, type RunOptions, Tensor, compile, sym } from '../engine/index.ts';
import { compileClipText, encodePrompts } from '../models/clip-text.ts';
import { type ControlNetModel, controlResidualName } from '../models/controlnet.ts';
import { type SdxlTextTower, compileSdxlTextEncoder, encodeSdxlPrompts, encodeSdxlTokenIds } from '../models/sdxl-text.ts';
import type { ClipTokenizer } from '../tokenizers/clip.ts';
import { loadControlNet } from '../models/controlnet-load.ts';
import { compileControlNet } from './controlnet.ts';
import { imageFromTensor } from '../io/image.ts';
import type { AutoencoderTiny } from '../models/autoencoder-tiny.ts';
import { type PreviewImage, latentPreview } from '../models/latent-preview.ts';
import { type LoadModelOptions, type StableDiffusionComponents, loadStableDiffusion } from '../models/load.ts';
import { VaeMismatchError, loadOtherVae } from '../models/other-vae.ts';
import { TinyVaeRunner } from '../models/tiny-vae-runner.ts';
import type { AttentionHook, UNet2DConditionModel } from '../models/unet.ts';
import { guidanceScaleEmbedding } from '../models/guidance-embedding.ts';
import { type DecodedImages, type ImageToLatentsOptions, type Shape4, VaeRunner } from '../models/vae-runner.ts';
import { vaeDownscale } from '../models/vae.ts';

export interface LoadOptions extends LoadModelOptions {
  run?: RunOptions;
  /**
   * Free each model's session as soon as a generation is done with it (text encoder before the
   * UNet runs, UNet before the VAE decodes): SD 1.5 at 512² then peaks at ~4 GB instead of ~6 GB.
   * For one-shot use (the CLI); a server that generates again keeps its sessions.
   */
  releaseSessions?: boolean;
  /**
   * Another VAE: an AutoencoderKL folder or .safetensors file replaces the model's; an
   * AutoencoderTiny folder (TAESD) then encodes, decodes and draws the step previews.
   */
  vae?: string;
  /**
   * An AutoencoderTiny folder for the step previews only (the pictures keep the model's VAE); one
   * that does not fit the model's latents is left out with a warning (previews are then linear).
   */
  previewVae?: string;
}

/** A tiny VAE (TAESD) a pipeline holds, and whether it makes the pictures too or only the previews. */
export interface TinyVaeUse {
  vae: AutoencoderTiny;
  pictures: boolean;
}

/** What else a UNet graph is traced with: an attention hook (with its own inputs and outputs), ControlNet residual inputs. */
export interface UNetGraphExtras {
  hook?: AttentionHook;
  /** Adds one graph input per ControlNet residual (named as the ControlNet graph's outputs). */
  controlResiduals?: boolean;
  inputs?: readonly Tensor[];
  /** Called after tracing: the tensors the hook gathered, as named graph outputs. */
  outputs?: () => Record<string, Tensor>;
  /** Parameters that are graph inputs fed as they stand (GraphSpec.trainable). */
  trainable?: Iterable<Parameter>;
}

export type Feeds = Record<string, { data: Float32Array; shape: number[] }>;

/** Encoded prompts: the token states [B, 77, C] and, for SDXL, the pooled text embedding [B, P]. */
export interface PromptConditioning {
  states: Float32Array;
  pooled?: Float32Array;
}

/** Per-job graphs a pipeline keeps (each a UNet session's weights and buffers). */
const KEPT_GRAPHS = 3;

export class StableDiffusion {
  /** The model's AutoencoderKL (or the one `vae` gave): training, and the pictures without a tiny VAE. */
  readonly vaeRunner: VaeRunner;
  /** The tiny VAE, when one was given: the step previews, and the pictures when `tinyMakesPictures`. */
  readonly tinyVae: TinyVaeRunner | undefined;
  readonly tinyMakesPictures: boolean;
  /** The plain UNet per context length (77 · chunks of a long prompt). */
  private readonly unetGraphs = new Map<number, Promise<CompiledGraph>>();
  /** Per context length, as `unetGraphs`: the UNet with ControlNet residual inputs, and each ControlNet. */
  private readonly controlledUNetGraphs = new Map<number, Promise<CompiledGraph>>();
  private readonly controlNetGraphs = new Map<ControlNetModel, Map<number, Promise<CompiledGraph>>>();
  private readonly controlNetModels = new Map<string, ControlNetModel>();
  /** Per clip skip: the text encoder's session (SDXL: one per tower). */
  private readonly textEncoderGraphs = new Map<number | undefined, Promise<CompiledGraph[]>>();
  /** Per-job UNet graphs (attention-controlled, null-text steps), most recently used first. */
  private keptGraphs: CompiledGraph[] = [];
  private trainableParams: ReadonlySet<Parameter> = new Set();

  constructor(
    readonly components: StableDiffusionComponents,
    readonly run: RunOptions = {},
    readonly releaseSessions = false,
    tiny?: TinyVaeUse,
  ) {
    // The VAEs stay fp32 whatever the weights dtype: the decoder is what the picture is made of.
    const vaeRun = { ...run, dtype: undefined };
    this.vaeRunner = new VaeRunner(components.vae, vaeRun);
    this.tinyVae = tiny && new TinyVaeRunner(tiny.vae, vaeRun);
    this.tinyMakesPictures = tiny?.pictures ?? false;
  }

  static load(path: string, options: LoadOptions = {}): StableDiffusion {
    const components = loadStableDiffusion(path, options);
    const { vae, previewVae } = options;
    if (vae !== undefined && previewVae !== undefined) throw new Error('a pipeline takes a tiny VAE as vae or as previewVae, not both');
    const other = vae === undefined ? undefined : loadOtherVae(vae, components.vae.config);
    if (other?.kind === 'kl') components.vae = other.vae;
    const previewOnly = previewVae === undefined ? undefined : loadPreviewVae(previewVae, components);
    const tiny = other?.kind === 'tiny' ? { vae: other.vae, pictures: true } : previewOnly && { vae: previewOnly, pictures: false };
    return new StableDiffusion(components, options.run, options.releaseSessions, tiny);
  }

  get name(): string {
    return this.components.name;
  }

  /** The parameters a training run updates, which the model's graphs take as inputs (none outside training). */
  get trainable(): ReadonlySet<Parameter> {
    return this.trainableParams;
  }

  /**
   * Declares the parameters a training run updates between steps: the UNet and text encoder graphs
   * compiled from now on take them as inputs fed their current values, so that samples drawn while
   * training see the weights as they stand. Graphs compiled before hold the old values as constants
   * and are released.
   */
  async setTrainable(params: Iterable<Parameter>): Promise<void> {
    this.trainableParams = new Set(params);
    await this.releaseUNet();
    await this.releaseTextEncoder();
  }

  /** Latent channels: latents are [B, channels, H/f, W/f] (an inpainting UNet takes more as its input). */
  get latentChannels(): number {
    return this.components.unet.config.out_channels;
  }

  /** The VAE's downscale factor f (8 for Stable Diffusion): images of H×W have latents of H/f × W/f. */
  get vaeScaleFactor(): number {
    return vaeDownscale(this.components.vae.config);
  }

  /** The image side the UNet was trained for, as diffusers chooses it: sample_size · f (SD 1.5: 512). */
  get defaultSize(): number {
    return this.components.unet.config.sample_size * this.vaeScaleFactor;
  }

  /** Whether this is an SDXL model: two text towers and the UNet's added conditions (text_embeds, time_ids). */
  get isSdxl(): boolean {
    return this.components.unet.add_embedding !== undefined;
  }

  /** Whether the UNet takes the guidance scale as an input (LCM-distilled: config time_cond_proj_dim). */
  get embedsGuidance(): boolean {
    return this.components.unet.config.time_cond_proj_dim !== null;
  }

  /**
   * Whether a run at `guidance` has classifier-free guidance's unconditional half: guidance > 1,
   * and a UNet that does not take the guidance as an input (an LCM-distilled one never has it).
   */
  classifierFree(guidance: number): boolean {
    return guidance > 1 && !this.embedsGuidance;
  }

  /** The UNet's `timestep_cond` for `rows` rows: LCM's embedding of w = guidance − 1; nothing for other UNets. */
  guidanceFeeds(guidance: number, rows: number): Feeds {
    const dim = this.components.unet.config.time_cond_proj_dim;
    return dim === null ? {} : { timestep_cond: { data: guidanceScaleEmbedding(guidance - 1, dim, rows), shape: [rows, dim] } };
  }

  /** [tokens, C]: C sums both towers' widths for SDXL. */
  get contextShape(): [number, number] {
    const width = this.textTowers().reduce((sum, t) => sum + t.textEncoder.config.hidden_size, 0);
    return [this.components.tokenizer.modelMaxLength, width];
  }

  /** Width of SDXL's pooled text embedding (text_encoder_2's projection_dim); 0 for other models. */
  get pooledWidth(): number {
    return this.isSdxl ? this.components.textEncoder2!.config.projection_dim : 0;
  }

  /** [B, 77, C] token states for each prompt. */
  async encodePrompts(prompts: string[], clipSkip?: number): Promise<Float32Array> {
    return (await this.encodeConditioning(prompts, clipSkip)).states;
  }

  /** Token states and (SDXL) the pooled text embedding for each prompt. */
  async encodeConditioning(prompts: string[], clipSkip?: number): Promise<PromptConditioning> {
    const graphs = await this.textEncoder(clipSkip);
    if (this.isSdxl) return encodeSdxlPrompts(this.textTowers(), graphs, prompts);
    const { tokenizer, textEncoder } = this.components;
    return { states: (await encodePrompts(textEncoder, tokenizer, prompts, { clipSkip, graph: graphs[0] })).data };
  }

  /**
   * The unconditional half of classifier-free guidance for `batch` images. Without a negative prompt
   * an SDXL model whose model_index.json sets force_zeros_for_empty_prompt gets zeros (states and
   * pooled vector), as diffusers does; otherwise the negative prompt (or "") is encoded.
   */
  async encodeNegative(negativePrompt: string | undefined, batch: number, clipSkip?: number): Promise<PromptConditioning> {
    if (negativePrompt === undefined && this.isSdxl && this.components.forceZerosForEmptyPrompt) {
      const [tokens, width] = this.contextShape;
      return { states: new Float32Array(batch * tokens * width), pooled: new Float32Array(batch * this.pooledWidth) };
    }
    return this.encodeConditioning(new Array(batch).fill(negativePrompt ?? ''), clipSkip);
  }

  /**
   * [rows, 77, C] token states (and, SDXL, each row's pooled embedding) for rows of ids of the
   * tokenizer's length (BOS … EOS, padding); `ids[i]` feeds text tower i (`tokenizers[i]`).
   */
  async encodeTokenIds(ids: readonly Int32Array[], clipSkip?: number): Promise<PromptConditioning> {
    const graphs = await this.textEncoder(clipSkip);
    if (this.isSdxl) return encodeSdxlTokenIds(this.textTowers(), graphs, ids);
    const [length] = this.contextShape;
    const out = await graphs[0].run({ input_ids: { data: BigInt64Array.from(ids[0]!, (id) => BigInt(id)), shape: [ids[0]!.length / length, length] } });
    return { states: out.last_hidden_state.data as Float32Array };
  }

  /** Each text tower's tokenizer (two for SDXL). */
  get tokenizers(): ClipTokenizer[] {
    return this.textTowers().map((t) => t.tokenizer);
  }

  private textTowers(): SdxlTextTower[] {
    const { tokenizer, textEncoder, tokenizer2, textEncoder2 } = this.components;
    return textEncoder2 && tokenizer2 ? [{ tokenizer, textEncoder }, { tokenizer: tokenizer2, textEncoder: textEncoder2 }] : [{ tokenizer, textEncoder }];
  }

  /** The text encoders' sessions for one clip skip (compiled on first use, held until released). */
  private textEncoder(clipSkip?: number): Promise<CompiledGraph[]> {
    let graphs = this.textEncoderGraphs.get(clipSkip);
    if (!graphs) {
      const options = { length: this.components.tokenizer.modelMaxLength, clipSkip, run: this.run, trainable: this.trainable };
      graphs = this.isSdxl
        ? Promise.all(this.textTowers().map((t) => compileSdxlTextEncoder(t.textEncoder, options)))
        : compileClipText(this.components.textEncoder, options).then((g) => [g]);
      this.textEncoderGraphs.set(clipSkip, graphs);
    }
    return graphs;
  }

  /** Pictures in [-1, 1] → diffusion latents, by the tiny VAE when it makes the pictures (no sampling: `rng` is unused then). */
  imageToLatents(images: Float32Array, shape: Shape4, options: ImageToLatentsOptions = {}): Promise<{ data: Float32Array; shape: Shape4 }> {
    return this.tinyVae && this.tinyMakesPictures ? this.tinyVae.imageToLatents(images, shape) : this.vaeRunner.imageToLatents(images, shape, options);
  }

  /** Diffusion latents → pictures [B, 3, H, W] in [0, 1], by the tiny VAE when it makes the pictures. */
  decodeLatents(latents: Float32Array, shape: Shape4): Promise<DecodedImages> {
    return this.tinyVae && this.tinyMakesPictures ? this.tinyVae.decodeLatents(latents, shape) : this.vaeRunner.decodeLatents(latents, shape);
  }

  /**
   * A step preview of (predicted clean) latents: decoded by the tiny VAE at the picture's size
   * when the pipeline has one, else the linear latent→RGB map at latent size.
   */
  async previewImages(latents: Float32Array, shape: Shape4): Promise<PreviewImage[]> {
    if (!this.tinyVae) return latentPreview(latents, shape);
    const decoded = await this.tinyVae.decodeLatents(latents, shape);
    return Array.from({ length: shape[0] }, (_, i) => imageFromTensor(decoded.data, i, decoded.shape, '0..1'));
  }

  /** Frees the VAE sessions, the tiny VAE's too. */
  async releaseVae(): Promise<void> {
    await this.vaeRunner.release();
    await this.tinyVae?.release();
  }

  /** Frees the text encoders' sessions, every clip skip's (a later encode creates them again). */
  async releaseTextEncoder(): Promise<void> {
    const graphs = [...this.textEncoderGraphs.values()];
    this.textEncoderGraphs.clear();
    for (const list of graphs) for (const graph of await list) await graph.release();
  }

  /** Frees the UNet's sessions, plain, controlled and kept, and the ControlNets' (a later `unet()` creates it again). */
  async releaseUNet(): Promise<void> {
    const graphs = [...this.unetGraphs.values(), ...this.controlledUNetGraphs.values(), ...[...this.controlNetGraphs.values()].flatMap((m) => [...m.values()])];
    const kept = this.keptGraphs;
    this.unetGraphs.clear();
    this.controlledUNetGraphs.clear();
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
    // The new graph replaces a kept one of the same session (which it also holds): it feeds this
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
      graph = compileUNet(this.components.unet, [tokens, this.contextShape[1]], this.run, { trainable: this.trainable });
      this.unetGraphs.set(tokens, graph);
    }
    return graph;
  }

  /** The UNet with ControlNet residual inputs (compiled on first use; the plain graph is separate). */
  controlledUNet(tokens = this.contextShape[0]): Promise<CompiledGraph> {
    let graph = this.controlledUNetGraphs.get(tokens);
    if (!graph) {
      graph = compileUNet(this.components.unet, [tokens, this.contextShape[1]], this.run, { controlResiduals: true, trainable: this.trainable });
      this.controlledUNetGraphs.set(tokens, graph);
    }
    return graph;
  }

  /**
   * A ControlNet for this model from a diffusers folder or a single file (read with this model's
   * UNet config), loaded once per path so that its session is compiled once too.
   */
  loadControlNet(path: string): ControlNetModel {
    let net = this.controlNetModels.get(path);
    if (!net) {
      net = loadControlNet(path, { base: this.components.unet.config });
      this.controlNetModels.set(path, net);
    }
    return net;
  }

  /** One ControlNet's session for a context of `tokens` (compiled on first use, held until `releaseUNet`). */
  controlNet(net: ControlNetModel, tokens = this.contextShape[0]): Promise<CompiledGraph> {
    let byTokens = this.controlNetGraphs.get(net);
    if (!byTokens) this.controlNetGraphs.set(net, (byTokens = new Map()));
    let graph = byTokens.get(tokens);
    if (!graph) {
      graph = compileControlNet(net, [tokens, this.contextShape[1]], this.run);
      byTokens.set(tokens, graph);
    }
    return graph;
  }

  /** ε (or v) for a batch of latents at one timestep, with context states [B, 77 · chunks, C] (and SDXL's text_embeds, time_ids in `feeds`). */
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

/**
 * The preview-only tiny VAE, or undefined with a warning when it does not fit the model (a server
 * may serve models of several families with one preview VAE).
 */
function loadPreviewVae(path: string, components: StableDiffusionComponents): AutoencoderTiny | undefined {
  try {
    const other = loadOtherVae(path, components.vae.config);
    if (other.kind !== 'tiny') throw new Error(`previewVae ${path}: not an AutoencoderTiny folder (an AutoencoderKL is no faster than the model's own VAE)`);
    return other.vae;
  } catch (e) {
    if (!(e instanceof VaeMismatchError)) throw e;
    components.warnings.push(`previews without the tiny VAE: ${e.message}`);
    return undefined;
  }
}

/**
 * Traces the UNet at `shape` [B, C, H, W] (dims may be symbolic): its graph inputs — sample, timestep,
 * encoder_hidden_states [B, ...context], for SDXL text_embeds [B, P] and time_ids [B, 6], for an
 * LCM-distilled UNet timestep_cond [B, time_cond_proj_dim], the hook's own, and one per ControlNet
 * residual when asked — and its output.
 */
export function traceUNet(unet: UNet2DConditionModel, shape: readonly Dim[], context: [number, number], extras: UNetGraphExtras = {}): { inputs: Tensor[]; noise: Tensor } {
  const [b, c, h, w] = shape;
  const sample = Tensor.input('sample', [b, c, h, w]);
  const timestep = Tensor.input('timestep', [b]);
  const states = Tensor.input('encoder_hidden_states', [b, ...context]);
  const { addition_time_embed_dim: timeDim, projection_class_embeddings_input_dim: addedDim } = unet.config;
  const added = unet.add_embedding ? { textEmbeds: Tensor.input('text_embeds', [b, addedDim! - 6 * timeDim!]), timeIds: Tensor.input('time_ids', [b, 6]) } : undefined;
  const condDim = unet.config.time_cond_proj_dim;
  const timestepCond = condDim === null ? undefined : Tensor.input('timestep_cond', [b, condDim]);
  const residuals: Tensor[] = [];
  const controlResidual = (feature: Tensor, index: number | 'mid') => {
    residuals.push(Tensor.input(controlResidualName(index), feature.shape));
    return residuals.at(-1)!;
  };
  const noise = unet.forward(sample, timestep, states, { attentionHook: extras.hook, added, timestepCond, controlResidual: extras.controlResiduals ? controlResidual : undefined });
  const addedInputs = [...(added ? [added.textEmbeds, added.timeIds] : []), ...(timestepCond ? [timestepCond] : [])];
  return { inputs: [sample, timestep, states, ...addedInputs, ...(extras.inputs ?? []), ...residuals], noise };
}

/** Traces and compiles the UNet with symbolic batch and size; outputs noise_pred and the hook's. */
export async function compileUNet(unet: UNet2DConditionModel, context: [number, number], run: RunOptions, extras: UNetGraphExtras = {}): Promise<CompiledGraph> {
  const { inputs, noise } = traceUNet(unet, [sym('B'), unet.config.in_channels, sym('H'), sym('W')], context, extras);
  return compile({ inputs, outputs: { noise_pred: noise, ...extras.outputs?.() }, trainable: extras.trainable }, run);
}
