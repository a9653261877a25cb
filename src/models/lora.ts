// LoRA on Stable Diffusion: adapters on the attention projections of the UNet (to_q, to_k, to_v,
// to_out.0) and optionally of the text encoder (q_proj, k_proj, v_proj, out_proj).
//
// Two ways to use a LoRA:
//  - as branches (LoraNetwork): each projection computes W·x + m·B(A(x)). This is how LoRA trains,
//    since only A and B are graph inputs and the base weights stay frozen in their file.
//  - merged (mergeLora): W' = W + m·B·A, computed once in memory. This is how `nuri generate`
//    applies a LoRA: the sampling graph is then exactly the base model's, with no extra matmuls
//    per projection per step, whatever the number of LoRAs stacked.

import { type CompiledGraph, Module, type Parameter, type RandomSource, SafetensorsFile, Tensor, add, compile, firstNonFinite, matmul, mul, sym } from '../engine/index.ts';
import type { ClipTextModel } from './clip-text.ts';
import { type LoraComponent, type LoraKeyStyle, type LoraLayerWeights, type LoraModuleNames, readLoraFile, writeLoraFile } from './lora-format.ts';
import { LoraAdapter, LoraLinear } from './lora-linear.ts';
import { sgmUnetModule } from './single-file-sdxl.ts';
import type { UNet2DConditionModel } from './unet.ts';

export { LoraAdapter, LoraLinear } from './lora-linear.ts';
export { type LoraComponent, type LoraKeyStyle, type LoraLayerWeights, kohyaName, readLoraFile, writeLoraFile } from './lora-format.ts';

/** The models a LoRA may touch; a text-encoder LoRA needs `textEncoder` (SDXL's second, `textEncoder2`). */
export interface LoraModels {
  unet: UNet2DConditionModel;
  textEncoder?: ClipTextModel;
  textEncoder2?: ClipTextModel;
}

/** Each component a LoRA names with its model, where the models have it. */
function components(models: LoraModels): [LoraComponent, Module][] {
  const all: [LoraComponent, Module | undefined][] = [['unet', models.unet], ['text_encoder', models.textEncoder], ['text_encoder_2', models.textEncoder2]];
  return all.filter((c): c is [LoraComponent, Module] => c[1] !== undefined);
}

export interface LoraConfig {
  rank: number;
  /** Defaults to the rank (multiplier 1), as diffusers' training scripts set it. */
  alpha?: number;
  /** Also adapt the text encoder's attention projections. */
  textEncoder?: boolean;
}

/** Every adaptable projection of a model (LoraLinear layers), found through its fields like parameters(). */
export function adaptableLayers(model: Module): LoraLinear[] {
  const out: LoraLinear[] = [];
  const visit = (v: unknown): void => {
    if (v instanceof LoraLinear) out.push(v);
    else if (Array.isArray(v)) v.forEach(visit);
    else if (v instanceof Module) for (const child of Object.values(v)) visit(child);
  };
  for (const child of Object.values(model)) visit(child);
  return out;
}

/** A layer's module path: its weight's name without ".weight". */
function modulePath(layer: LoraLinear): string {
  return layer.weight.name.replace(/\.weight$/, '');
}

interface Attached {
  component: LoraComponent;
  layer: LoraLinear;
  adapter: LoraAdapter;
}

/** Adapters attached to a model's projections as branches: trainable, savable, removable. */
export class LoraNetwork {
  private constructor(private readonly attached: Attached[]) {}

  /** Fresh adapters (A random, B zero) on every adaptable projection. */
  static create(models: LoraModels, config: LoraConfig, rng: RandomSource): LoraNetwork {
    const alpha = config.alpha ?? config.rank;
    const targets: [LoraComponent, Module | undefined][] = [['unet', models.unet]];
    if (config.textEncoder) {
      if (!models.textEncoder) throw new Error('LoRA on the text encoder needs the text encoder');
      targets.push(['text_encoder', models.textEncoder]);
    }
    const attached: Attached[] = [];
    for (const [component, model] of targets) {
      for (const layer of adaptableLayers(model!)) {
        const adapter = new LoraAdapter(modulePath(layer), layer.inFeatures, layer.outFeatures, config.rank, alpha);
        adapter.init(rng);
        layer.adapters.push(adapter);
        attached.push({ component, layer, adapter });
      }
    }
    return new LoraNetwork(attached);
  }

  /** Attaches saved weights as branches (scaled by `scale`); every layer must be an adaptable projection. */
  static attach(models: LoraModels, layers: readonly LoraLayerWeights[], scale = 1, tag = 'default'): LoraNetwork {
    const byPath = projectionsByPath(models);
    const attached: Attached[] = [];
    for (const w of layers) {
      const layer = byPath.get(`${w.component}:${w.module}`);
      if (!layer) throw new Error(`LoRA layer ${w.component} ${w.module} is not an attention projection of this model; merge it instead`);
      if (layer.inFeatures !== w.inFeatures || layer.outFeatures !== w.outFeatures) {
        throw new Error(`LoRA layer ${w.component} ${w.module} is ${w.outFeatures}×${w.inFeatures}, the model's is ${layer.outFeatures}×${layer.inFeatures}`);
      }
      const adapter = new LoraAdapter(w.module, w.inFeatures, w.outFeatures, w.rank, w.alpha, scale, tag);
      adapter.down.setValue(w.down);
      adapter.up.setValue(w.up);
      layer.adapters.push(adapter);
      attached.push({ component: w.component, layer, adapter });
    }
    return new LoraNetwork(attached);
  }

  /** A and B of every adapter, in a fixed order (what an optimiser updates). */
  parameters(): Parameter[] {
    return this.attached.flatMap(({ adapter }) => [adapter.down, adapter.up]);
  }

  /** The current weights, ready to save. */
  weights(): LoraLayerWeights[] {
    return this.attached.map(({ component, layer, adapter }) => ({
      component,
      module: modulePath(layer),
      rank: adapter.rank,
      inFeatures: adapter.inFeatures,
      outFeatures: adapter.outFeatures,
      alpha: adapter.alpha,
      down: new Float32Array(adapter.down.value()),
      up: new Float32Array(adapter.up.value()),
    }));
  }

  save(path: string, style: LoraKeyStyle = 'diffusers', metadata: Record<string, string> = {}): void {
    writeLoraFile(path, this.weights(), style, metadata);
  }

  /** Takes the adapters off their layers: the model computes its base function again. */
  detach(): void {
    for (const { layer, adapter } of this.attached) {
      const i = layer.adapters.indexOf(adapter);
      if (i >= 0) layer.adapters.splice(i, 1);
    }
  }
}

function projectionsByPath(models: LoraModels): Map<string, LoraLinear> {
  const out = new Map<string, LoraLinear>();
  for (const [component, model] of components(models)) for (const layer of adaptableLayers(model)) out.set(`${component}:${modulePath(layer)}`, layer);
  return out;
}

/** Every weight-bearing module path of the models: what a LoRA file may name (kohya files adapt more than attention). */
export function loraModuleNames(models: LoraModels): LoraModuleNames {
  const paths = (m: Module) => m.parameters().filter((p) => p.name.endsWith('.weight')).map((p) => p.name.slice(0, -'.weight'.length));
  const names: LoraModuleNames = Object.fromEntries(components(models).map(([component, model]) => [component, paths(model)]));
  // kohya names SDXL's UNet layers by the original (SGM) module paths.
  if (models.unet.add_embedding) {
    names.unetOriginal = paths(models.unet).flatMap((module): [string, string][] => {
      const original = sgmUnetModule(module, models.unet.config);
      return original ? [[original, module]] : [];
    });
  }
  return names;
}

/** Reads a LoRA file (diffusers/PEFT, older diffusers or kohya keys) for these models. */
export function loadLoraFile(path: string, models: LoraModels): { layers: LoraLayerWeights[]; style: string; unmatched: string[] } {
  const file = SafetensorsFile.open(path);
  try {
    return readLoraFile(file, loraModuleNames(models));
  } finally {
    file.close();
  }
}

/**
 * W ← W + scale·(alpha/rank)·B·A for each layer, in memory. Works on any linear or conv weight
 * the layer names (kohya LoRAs also adapt proj_in/proj_out and the feed-forward), not only the
 * attention projections. The changed weights become in-memory values; the rest stay in their file.
 */
export async function mergeLora(models: LoraModels, layers: readonly LoraLayerWeights[], scale = 1, source = 'LoRA'): Promise<void> {
  if (!Number.isFinite(scale)) throw new Error(`${source}: weight ${scale} is not a finite number`);
  const weights = new Map<string, Parameter>();
  for (const [component, model] of components(models)) for (const p of model.parameters()) weights.set(`${component}:${p.name}`, p);
  const problems: string[] = [];
  const plan: [Parameter, LoraLayerWeights][] = [];
  for (const w of layers) {
    const p = weights.get(`${w.component}:${w.module}.weight`);
    if (!p) problems.push(`${w.component} has no layer ${w.module}`);
    else if (p.shape[0] !== w.outFeatures || p.size !== w.outFeatures * w.inFeatures) {
      problems.push(`${w.component} ${w.module} is [${p.shape.join(', ')}], the LoRA is ${w.outFeatures}×${w.inFeatures}`);
    } else plan.push([p, w]);
  }
  if (problems.length) throw new Error(`${source}: cannot apply it: ${problems.length} layer(s) do not fit the model\n  ${problems.slice(0, 8).join('\n  ')}`);
  if (scale === 0) return;
  const update = await lowRankUpdate();
  const results: [Parameter, Float32Array][] = [];
  for (const [p, l] of plan) {
    const out = await update.run({
      w: { data: p.value(), shape: [l.outFeatures, l.inFeatures] },
      b: { data: l.up, shape: [l.outFeatures, l.rank] },
      a: { data: l.down, shape: [l.rank, l.inFeatures] },
      m: Float32Array.of((scale * l.alpha) / l.rank),
    });
    const merged = out.merged.data as Float32Array;
    // A huge weight (1e308) only shows as overflow in the product: refuse it, naming the layer,
    // before any weight changes, rather than draw a black picture.
    const bad = firstNonFinite(merged);
    if (bad >= 0) throw new Error(`${source}: merging at weight ${scale} makes ${l.component} ${l.module}.weight ${merged[bad]} (alpha ${l.alpha}, rank ${l.rank}); the LoRA's numbers or weight are too large`);
    results.push([p, merged]);
  }
  for (const [p, merged] of results) p.setValue(merged);
}

let updateGraph: Promise<CompiledGraph> | undefined;

/** W + m·B·A at any sizes, one cached session: ORT's MatMul does a rank-64 SD-1.5 merge in well under a second, where a JS loop takes tens. */
function lowRankUpdate(): Promise<CompiledGraph> {
  updateGraph ??= (() => {
    const [out, inner, rank] = [sym('out'), sym('in'), sym('rank')];
    const w = Tensor.input('w', [out, inner]);
    const b = Tensor.input('b', [out, rank]);
    const a = Tensor.input('a', [rank, inner]);
    const m = Tensor.input('m', [1]);
    return compile({ inputs: [w, b, a, m], outputs: { merged: add(w, mul(matmul(b, a), m)) } });
  })();
  return updateGraph;
}
