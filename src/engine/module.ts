// Modules in the PyTorch spirit: each owns named Parameters (full dotted names, as in checkpoints)
// and a `forward` that traces engine ops. Loading a model is binding each name to a tensor in a file
// (src/models/checkpoint/bind.ts).

import { conv2d, type ConvOptions, linear } from './ops/linalg.ts';
import { groupNorm, layerNorm } from './ops/nn.ts';
import { gather } from './ops/shape.ts';
import { Parameter } from './parameter.ts';
import type { RandomSource } from './random.ts';
import type { Tensor } from './tensor.ts';

/** `prefix.name`, or `name` at the root. */
export function joinName(prefix: string, name: string | number): string {
  return prefix ? `${prefix}.${name}` : String(name);
}

export abstract class Module {
  constructor(readonly name: string) {}

  protected param(localName: string, shape: readonly number[]): Parameter {
    return new Parameter(joinName(this.name, localName), shape);
  }

  /** Every parameter of this module and its children, found through its fields. */
  parameters(): Parameter[] {
    const out: Parameter[] = [];
    const visit = (v: unknown): void => {
      if (v instanceof Parameter) out.push(v);
      else if (v instanceof Module) out.push(...v.parameters());
      else if (Array.isArray(v)) v.forEach(visit);
    };
    for (const value of Object.values(this)) visit(value);
    return out;
  }

  /** Fresh weights (PyTorch's default initialisers unless a layer says otherwise). */
  init(rng: RandomSource): void {
    const visit = (v: unknown): void => {
      if (v instanceof Module) v.init(rng);
      else if (Array.isArray(v)) v.forEach(visit);
    };
    for (const value of Object.values(this)) visit(value);
  }
}

function uniform(p: Parameter, bound: number, rng: RandomSource): void {
  const u = rng.rand(p.size);
  for (let i = 0; i < u.length; i++) u[i] = (u[i] * 2 - 1) * bound;
  p.setValue(u);
}

function fill(p: Parameter, value: number): void {
  p.setValue(new Float32Array(p.size).fill(value));
}

export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | undefined;

  constructor(name: string, readonly inFeatures: number, readonly outFeatures: number, bias = true) {
    super(name);
    this.weight = this.param('weight', [outFeatures, inFeatures]);
    this.bias = bias ? this.param('bias', [outFeatures]) : undefined;
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight.tensor, this.bias?.tensor);
  }

  override init(rng: RandomSource): void {
    const bound = 1 / Math.sqrt(this.inFeatures);
    uniform(this.weight, bound, rng);
    if (this.bias) uniform(this.bias, bound, rng);
  }
}

export class Conv2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | undefined;

  constructor(
    name: string,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    readonly options: ConvOptions & { bias?: boolean } = {},
  ) {
    super(name);
    const groups = options.groups ?? 1;
    this.weight = this.param('weight', [outChannels, inChannels / groups, kernelSize, kernelSize]);
    this.bias = options.bias === false ? undefined : this.param('bias', [outChannels]);
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight.tensor, this.bias?.tensor, this.options);
  }

  override init(rng: RandomSource): void {
    const fanIn = (this.inChannels / (this.options.groups ?? 1)) * this.kernelSize * this.kernelSize;
    uniform(this.weight, 1 / Math.sqrt(fanIn), rng);
    if (this.bias) uniform(this.bias, 1 / Math.sqrt(fanIn), rng);
  }
}

export class GroupNorm extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;

  constructor(name: string, readonly groups: number, readonly channels: number, readonly eps = 1e-5) {
    super(name);
    this.weight = this.param('weight', [channels]);
    this.bias = this.param('bias', [channels]);
  }

  forward(x: Tensor): Tensor {
    return groupNorm(x, this.groups, this.weight.tensor, this.bias.tensor, this.eps);
  }

  override init(): void {
    fill(this.weight, 1);
    fill(this.bias, 0);
  }
}

export class LayerNorm extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;

  constructor(name: string, readonly dim: number, readonly eps = 1e-5) {
    super(name);
    this.weight = this.param('weight', [dim]);
    this.bias = this.param('bias', [dim]);
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight.tensor, this.bias.tensor, this.eps);
  }

  override init(): void {
    fill(this.weight, 1);
    fill(this.bias, 0);
  }
}

export class Embedding extends Module {
  readonly weight: Parameter;

  constructor(name: string, readonly count: number, readonly dim: number, readonly initStd = 1) {
    super(name);
    this.weight = this.param('weight', [count, dim]);
  }

  forward(ids: Tensor): Tensor {
    return gather(this.weight.tensor, ids);
  }

  override init(rng: RandomSource): void {
    const w = rng.randn(this.weight.size);
    for (let i = 0; i < w.length; i++) w[i] *= this.initStd;
    this.weight.setValue(w);
  }
}
