// LoRA files on disk. The same low-rank pairs travel under three naming schemes:
//
//   diffusers / PEFT   unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight  (A [r, in])
//                      unet.….to_q.lora_B.weight (B [out, r]); alpha in the `lora_adapter_metadata` JSON
//   diffusers, older   unet.….attn1.processor.to_q_lora.down.weight / .up.weight   (to_out.0 → to_out_lora)
//                      unet.….attn1.to_q.lora.down.weight;  text_encoder.….q_proj.lora_linear_layer.down.weight
//   kohya (sd-scripts) lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight,
//                      .lora_up.weight, .alpha (a scalar);  lora_te_text_model_encoder_layers_0_self_attn_q_proj.…
//                      SDXL: lora_unet_input_blocks_4_1_… (the original UNet's names), lora_te1_ / lora_te2_
//
// Everything is read into one form: per adapted layer, its component, its module path in the
// diffusers / transformers naming, A, B and alpha. Kohya names replace every dot with "_", which
// cannot be undone by rule (module names contain "_"), so reading them takes the model's own
// module paths and matches exactly.

import { firstNonFinite } from '../engine/finite.ts';
import { type SafetensorsFile, type WritableTensor, writeSafetensors } from '../engine/safetensors.ts';

/** Where a layer lives: the UNet, the text encoder, or SDXL's second text encoder. */
export type LoraComponent = 'unet' | 'text_encoder' | 'text_encoder_2';
const COMPONENTS: readonly LoraComponent[] = ['unet', 'text_encoder', 'text_encoder_2'];
export type LoraKeyStyle = 'diffusers' | 'kohya';

/**
 * One adapted layer. A conv LoRA is stored flattened: down [rank, C_in·k·k] (a k×k conv, as
 * LCM-LoRA adapts the resnets' 3×3 convs), up [C_out, rank] (always 1×1), so B·A is the conv
 * weight [C_out, C_in, k, k] laid out flat.
 */
export interface LoraLayerWeights {
  component: LoraComponent;
  /** The adapted layer's module path, e.g. `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`. */
  module: string;
  rank: number;
  inFeatures: number;
  outFeatures: number;
  alpha: number;
  /** A (lora_down) [rank, in]. */
  down: Float32Array;
  /** B (lora_up) [out, rank]. */
  up: Float32Array;
}

const KOHYA_PREFIX: Record<LoraComponent, string> = { unet: 'lora_unet_', text_encoder: 'lora_te_', text_encoder_2: 'lora_te2_' };
const METADATA_KEY = 'lora_adapter_metadata';

export function kohyaName(component: LoraComponent, module: string): string {
  return KOHYA_PREFIX[component] + module.replace(/\./g, '_');
}

/** Writes layers as a LoRA safetensors file in the given key style (fp32), with extra metadata strings. */
export function writeLoraFile(path: string, layers: readonly LoraLayerWeights[], style: LoraKeyStyle = 'diffusers', extraMetadata: Record<string, string> = {}): void {
  const tensors = new Map<string, WritableTensor>();
  const put = (key: string, shape: number[], data: Float32Array) => tensors.set(key, { dtype: 'F32', shape, data });
  for (const l of layers) {
    if (style === 'kohya') {
      const base = kohyaName(l.component, l.module);
      put(`${base}.lora_down.weight`, [l.rank, l.inFeatures], l.down);
      put(`${base}.lora_up.weight`, [l.outFeatures, l.rank], l.up);
      put(`${base}.alpha`, [], Float32Array.of(l.alpha));
    } else {
      const base = `${l.component}.${l.module}`; // the component's folder name is the key prefix
      put(`${base}.lora_A.weight`, [l.rank, l.inFeatures], l.down);
      put(`${base}.lora_B.weight`, [l.outFeatures, l.rank], l.up);
    }
  }
  const metadata: Record<string, string> = { ...extraMetadata, format: 'pt' };
  if (style === 'diffusers') metadata[METADATA_KEY] = JSON.stringify(peftMetadata(layers));
  else Object.assign(metadata, kohyaMetadata(layers));
  writeSafetensors(path, tensors, metadata);
}

/** PEFT's LoraConfig fields per component (what diffusers writes): r, lora_alpha, target_modules, patterns where layers differ. */
function peftMetadata(layers: readonly LoraLayerWeights[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const component of COMPONENTS) {
    const own = layers.filter((l) => l.component === component);
    if (!own.length) continue;
    const rank = own[0].rank;
    const alpha = own[0].alpha;
    out[`${component}.r`] = rank;
    out[`${component}.lora_alpha`] = alpha;
    out[`${component}.target_modules`] = [...new Set(own.map((l) => leafName(l.module)))];
    const rankPattern = Object.fromEntries(own.filter((l) => l.rank !== rank).map((l) => [l.module, l.rank]));
    const alphaPattern = Object.fromEntries(own.filter((l) => l.alpha !== alpha).map((l) => [l.module, l.alpha]));
    if (Object.keys(rankPattern).length) out[`${component}.rank_pattern`] = rankPattern;
    if (Object.keys(alphaPattern).length) out[`${component}.alpha_pattern`] = alphaPattern;
  }
  return out;
}

/** The layer's own name within its block: `to_q`, `q_proj`, `to_out.0`. */
function leafName(module: string): string {
  const parts = module.split('.');
  return parts.slice(/^\d+$/.test(parts[parts.length - 1]) ? -2 : -1).join('.');
}

/** The `ss_*` fields kohya's tools and UIs show. */
function kohyaMetadata(layers: readonly LoraLayerWeights[]): Record<string, string> {
  if (!layers.length) return {};
  return { ss_network_module: 'networks.lora', ss_network_dim: String(layers[0].rank), ss_network_alpha: String(layers[0].alpha) };
}

/**
 * The module paths a file's keys may name, per component, e.g. from the model's weight parameters;
 * `unetOriginal` pairs [original (LDM / SGM) path, diffusers path] for kohya's SDXL UNet names.
 */
export type LoraModuleNames = Partial<Record<LoraComponent, Iterable<string>>> & { unetOriginal?: Iterable<[string, string]> };

export interface ReadLora {
  layers: LoraLayerWeights[];
  style: LoraKeyStyle | 'diffusers-old';
  /** Keys that name no layer of the model (reported, not applied). */
  unmatched: string[];
}

type Role = 'down' | 'up' | 'alpha';
interface Pending {
  component: LoraComponent;
  module: string;
  down?: StoredMatrix;
  up?: StoredMatrix;
  alpha?: number;
  alphaKey?: string;
}

interface StoredMatrix {
  key: string;
  shape: number[];
  data: Float32Array;
}

interface ParsedKey {
  style: ReadLora['style'];
  component: LoraComponent;
  module: string;
  role: Role;
}

/** A key of any supported style as (style, component, module, role); undefined for keys that name no known layer. */
function parseKey(key: string, kohya: Map<string, { component: LoraComponent; module: string }>): ParsedKey | undefined {
  let m = /^(lora_unet_|lora_te[12]?_)(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$/.exec(key);
  if (m) {
    const found = kohya.get(`${m[1] === 'lora_te1_' ? 'lora_te_' : m[1]}${m[2]}`);
    if (!found) return undefined;
    return { style: 'kohya', ...found, role: m[3] === 'alpha' ? 'alpha' : m[3].startsWith('lora_down') ? 'down' : 'up' };
  }
  // diffusers files prefix "unet." / "text_encoder."; the oldest ones had UNet keys with no prefix.
  const component = (path: string): { component: LoraComponent; module: string } => {
    for (const c of ['text_encoder_2', 'text_encoder'] as const) if (path.startsWith(`${c}.`)) return { component: c, module: path.slice(c.length + 1) };
    return { component: 'unet', module: path.startsWith('unet.') ? path.slice(5) : path };
  };
  m = /^(.+)\.lora_(A|B)\.weight$/.exec(key);
  if (m) return { style: 'diffusers', ...component(m[1]), role: m[2] === 'A' ? 'down' : 'up' };
  m = /^(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/.exec(key);
  if (m) return { style: 'diffusers-old', ...component(`${m[1]}.${m[2] === 'to_out' ? 'to_out.0' : m[2]}`), role: m[3] as Role };
  m = /^(.+?)\.(?:lora|lora_linear_layer)\.(down|up)\.weight$/.exec(key);
  if (m) return { style: 'diffusers-old', ...component(m[1]), role: m[2] as Role };
  m = /^(.+)\.alpha$/.exec(key);
  if (m) return { style: 'diffusers', ...component(m[1]), role: 'alpha' };
  return undefined;
}

/**
 * Reads a LoRA file of any supported style. `modules` lists the layers of the model it is meant
 * for; kohya keys are matched against them exactly.
 */
export function readLoraFile(file: SafetensorsFile, modules: LoraModuleNames): ReadLora {
  const kohya = new Map<string, { component: LoraComponent; module: string }>();
  for (const component of COMPONENTS) {
    for (const module of modules[component] ?? []) kohya.set(kohyaName(component, module), { component, module });
  }
  for (const [original, module] of modules.unetOriginal ?? []) kohya.set(kohyaName('unet', original), { component: 'unet', module });
  const pending = new Map<string, Pending>();
  const unmatched: string[] = [];
  const styles = new Set<ReadLora['style']>();
  for (const key of file.names()) {
    const parsed = parseKey(key, kohya);
    if (!parsed) {
      unmatched.push(key);
      continue;
    }
    styles.add(parsed.style);
    const id = `${parsed.component}:${parsed.module}`;
    let p = pending.get(id);
    if (!p) pending.set(id, (p = { component: parsed.component, module: parsed.module }));
    const { shape } = file.entry(key);
    const data = file.readFloat32(key);
    const bad = firstNonFinite(data);
    if (bad >= 0) throw new Error(`LoRA file ${file.path}: tensor ${key} holds ${data[bad]} (at index ${bad}); a LoRA must hold finite numbers`);
    if (parsed.role === 'alpha') {
      if (data.length !== 1) throw new Error(`LoRA file ${file.path}: tensor ${key} has ${data.length} values; an alpha is one number`);
      [p.alpha, p.alphaKey] = [data[0], key];
    } else p[parsed.role] = { key, shape, data };
  }
  const metadata = peftAlphas(file);
  const layers: LoraLayerWeights[] = [];
  for (const p of pending.values()) layers.push(complete(p, file.path, metadata));
  const style = styles.has('kohya') ? 'kohya' : styles.has('diffusers-old') ? 'diffusers-old' : 'diffusers';
  return { layers, style, unmatched };
}

/** Alphas that diffusers keeps in the file's metadata (PEFT LoraConfig, keyed by component). */
function peftAlphas(file: SafetensorsFile): (component: LoraComponent, module: string) => number | undefined {
  const raw = file.metadata[METADATA_KEY];
  if (!raw) return () => undefined;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    throw new Error(`LoRA file ${file.path}: metadata "${METADATA_KEY}" is not valid JSON`);
  }
  return (component, module) => {
    const pattern = json[`${component}.alpha_pattern`] as Record<string, number> | undefined;
    const alpha = pattern?.[module] ?? json[`${component}.lora_alpha`];
    return typeof alpha === 'number' ? alpha : undefined;
  };
}

function complete(p: Pending, path: string, metadataAlpha: (c: LoraComponent, m: string) => number | undefined): LoraLayerWeights {
  const where = `LoRA file ${path}: layer ${p.component} ${p.module}`;
  if (!p.down || !p.up) throw new Error(`${where} has ${p.down ? 'no up (B)' : 'no down (A)'} matrix`);
  // [rows, cols, k, k] → [rows, cols·k·k]; the up (B) side of a conv LoRA is a 1×1 conv.
  const flat = (shape: number[], what: string, kernelAllowed: boolean): [number, number] => {
    const [rows, cols, ...kernel] = shape;
    if (shape.length < 2 || shape.length > 4 || (!kernelAllowed && kernel.some((k) => k !== 1))) {
      throw new Error(`${where}: ${what} has shape [${shape.join(', ')}]; expected a linear [out, in] or conv [out, in, k, k] LoRA with a 1×1 up (B)`);
    }
    return [rows, kernel.reduce((a, k) => a * k, cols)];
  };
  const [rank, inFeatures] = flat(p.down.shape, 'down (A)', true);
  const [outFeatures, upRank] = flat(p.up.shape, 'up (B)', false);
  if (upRank !== rank) throw new Error(`${where}: down (A) has rank ${rank} but up (B) has rank ${upRank}`);
  // Rank 0 would scale the update by alpha/0: NaN or Inf in every merged weight.
  if (rank < 1 || inFeatures < 1 || outFeatures < 1) throw new Error(`${where}: tensor ${p.down.key} has shape [${p.down.shape.join(', ')}]; a LoRA needs rank ≥ 1 and non-empty layers`);
  const alpha = p.alpha ?? metadataAlpha(p.component, p.module) ?? rank; // no alpha stored: scale 1, as diffusers assumes
  if (!Number.isFinite(alpha)) throw new Error(`${where}: alpha ${p.alphaKey ?? `in metadata "${METADATA_KEY}"`} is ${alpha}; it must be a finite number`);
  return { component: p.component, module: p.module, rank, inFeatures, outFeatures, alpha, down: p.down.data, up: p.up.data };
}
