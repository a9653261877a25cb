// The transformer encoder shared by CLIP's text and vision towers (transformers' CLIPEncoder):
// pre-LayerNorm layers of multi-head self-attention and an MLP, each around a residual. The text
// tower attends causally, the vision tower to every patch.

import {
  Linear,
  LayerNorm,
  Module,
  type Parameter,
  type RandomSource,
  Tensor,
  add,
  gelu,
  geluTanh,
  joinName,
  matmul,
  mergeHeads,
  mul,
  quickGelu,
  softmax,
  splitHeads,
  transposeLast,
  attention,
} from '../engine/index.ts';
import { LoraLinear } from './lora-linear.ts';
import type { ClipActivation, ClipEncoderConfig } from './checkpoint/clip-config.ts';

export type { ClipActivation, ClipEncoderConfig } from './checkpoint/clip-config.ts';

const ACTIVATIONS: Record<ClipActivation, (x: Tensor) => Tensor> = {
  quick_gelu: quickGelu,
  gelu,
  gelu_new: geluTanh,
  gelu_pytorch_tanh: geluTanh,
};

/** Replaces a parameter's value with N(0, std²) samples. */
export function initNormal(p: Parameter, std: number, rng: RandomSource): void {
  const values = rng.randn(p.size);
  for (let i = 0; i < values.length; i++) values[i] *= std;
  p.setValue(values);
}

export function initZeros(p: Parameter): void {
  p.setValue(new Float32Array(p.size));
}

/** Where −∞ would go: transformers fills masked scores with float32's lowest value. */
const MASKED = -3.4028234663852886e38;

/** Additive causal mask [L, L]: 0 where a query may see the key (key ≤ query), very negative above. */
export function causalMask(length: number): Tensor {
  const mask = new Float32Array(length * length);
  for (let q = 0; q < length; q++) for (let k = q + 1; k < length; k++) mask[q * length + k] = MASKED;
  return Tensor.constant(mask, [length, length]);
}

/** Self-attention with transformers' q/k/v/out_proj names; the projections accept LoRA adapters. */
export class ClipAttention extends Module {
  readonly qProj: LoraLinear;
  readonly kProj: LoraLinear;
  readonly vProj: LoraLinear;
  readonly outProj: LoraLinear;
  readonly heads: number;
  readonly scale: number;

  constructor(name: string, private readonly config: ClipEncoderConfig) {
    super(name);
    const c = config.hidden_size;
    this.heads = config.num_attention_heads;
    this.scale = 1 / Math.sqrt(c / this.heads);
    this.qProj = new LoraLinear(joinName(name, 'q_proj'), c, c);
    this.kProj = new LoraLinear(joinName(name, 'k_proj'), c, c);
    this.vProj = new LoraLinear(joinName(name, 'v_proj'), c, c);
    this.outProj = new LoraLinear(joinName(name, 'out_proj'), c, c);
  }

  /**
   * Self-attention over [B, L, C]. With an additive `mask` [L, L] the scores are masked before the
   * softmax in plain ops (the engine's fused attention takes no mask); without one it is the fused op.
   */
  forward(x: Tensor, mask?: Tensor): Tensor {
    const q = this.qProj.forward(x);
    const k = this.kProj.forward(x);
    const v = this.vProj.forward(x);
    if (!mask) return this.outProj.forward(attention(q, k, v, this.heads, this.scale));
    const scores = add(mul(matmul(splitHeads(q, this.heads), transposeLast(splitHeads(k, this.heads))), this.scale), mask); // [B, heads, L, L]
    const mixed = matmul(softmax(scores, -1), splitHeads(v, this.heads)); // [B, heads, L, D]
    return this.outProj.forward(mergeHeads(mixed));
  }

  override init(rng: RandomSource): void {
    const { hidden_size: hiddenSize, num_hidden_layers: numHiddenLayers, initializer_factor: initializerFactor } = this.config;
    const inStd = hiddenSize ** -0.5 * (2 * numHiddenLayers) ** -0.5 * initializerFactor;
    for (const proj of [this.qProj, this.kProj, this.vProj]) initNormal(proj.weight, inStd, rng);
    initNormal(this.outProj.weight, hiddenSize ** -0.5 * initializerFactor, rng);
    for (const proj of [this.qProj, this.kProj, this.vProj, this.outProj]) initZeros(proj.bias!);
  }
}

export class ClipMlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  private readonly activation: (x: Tensor) => Tensor;

  constructor(name: string, private readonly config: ClipEncoderConfig) {
    super(name);
    this.fc1 = new Linear(joinName(name, 'fc1'), config.hidden_size, config.intermediate_size);
    this.fc2 = new Linear(joinName(name, 'fc2'), config.intermediate_size, config.hidden_size);
    this.activation = ACTIVATIONS[config.hidden_act];
  }

  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.activation(this.fc1.forward(x)));
  }

  override init(rng: RandomSource): void {
    const { hidden_size: hiddenSize, num_hidden_layers: numHiddenLayers, initializer_factor: initializerFactor } = this.config;
    initNormal(this.fc1.weight, (2 * hiddenSize) ** -0.5 * initializerFactor, rng);
    initNormal(this.fc2.weight, hiddenSize ** -0.5 * (2 * numHiddenLayers) ** -0.5 * initializerFactor, rng);
    initZeros(this.fc1.bias!);
    initZeros(this.fc2.bias!);
  }
}

export class ClipEncoderLayer extends Module {
  readonly selfAttn: ClipAttention;
  readonly layerNorm1: LayerNorm;
  readonly mlp: ClipMlp;
  readonly layerNorm2: LayerNorm;

  constructor(name: string, config: ClipEncoderConfig) {
    super(name);
    this.selfAttn = new ClipAttention(joinName(name, 'self_attn'), config);
    this.layerNorm1 = new LayerNorm(joinName(name, 'layer_norm1'), config.hidden_size, config.layer_norm_eps);
    this.mlp = new ClipMlp(joinName(name, 'mlp'), config);
    this.layerNorm2 = new LayerNorm(joinName(name, 'layer_norm2'), config.hidden_size, config.layer_norm_eps);
  }

  forward(x: Tensor, mask?: Tensor): Tensor {
    const h = add(x, this.selfAttn.forward(this.layerNorm1.forward(x), mask));
    return add(h, this.mlp.forward(this.layerNorm2.forward(h)));
  }
}

export class ClipEncoder extends Module {
  readonly layers: ClipEncoderLayer[];

  constructor(name: string, config: ClipEncoderConfig) {
    super(name);
    this.layers = Array.from({ length: config.num_hidden_layers }, (_, i) => new ClipEncoderLayer(joinName(name, `layers.${i}`), config));
  }

  /**
   * Runs the first `count` layers (all by default) and returns the hidden states as transformers
   * numbers them: [input, after layer 1, …, after layer `count`].
   */
  forward(x: Tensor, mask?: Tensor, count = this.layers.length): Tensor[] {
    const states = [x];
    for (const layer of this.layers.slice(0, count)) states.push(layer.forward(states[states.length - 1], mask));
    return states;
  }
}
