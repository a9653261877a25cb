// The symbolic Tensor: a value in a traced graph. Model code calls ops on Tensors; each op records a
// node whose inputs are other Tensors, so the graph is simply the DAG reachable from the outputs.
// Nothing runs until the graph is compiled to ONNX (emit.ts) and run on ONNX Runtime (session.ts).

import { type Dim, shapeToString } from './dims.ts';
import type { Emitter } from './emit.ts';
import type { Parameter } from './parameter.ts';

export type DType = 'float32' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'bool' | 'uint8' | 'int8';
export type TypedData = Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array | Int8Array;

/** Integers become INT attributes; wrap a float that may be integral as `{ float: 1 }`. */
export type AttrValue = number | string | boolean | number[] | { float: number } | undefined;
export type Attrs = Record<string, AttrValue>;

/** One primitive: how it becomes ONNX, and its vector–Jacobian product written in engine ops. */
export interface OpSpec {
  readonly type: string;
  emit(e: Emitter, node: OpNode, out: Tensor): string;
  /** Gradients for each input given the output's gradient `g`; undefined where none flows. */
  vjp?(g: Tensor, node: OpNode, out: Tensor): (Tensor | undefined)[];
  /**
   * For an op that can read a value another op computes anyway (a gradient reusing its forward's
   * intermediate): that op, and the bytes kept alive from one to the other. The emitter grants
   * these within a budget; see Emitter.keeps.
   */
  keeps?(node: OpNode, out: Tensor): { node: OpNode; bytes: number } | undefined;
}

export interface OpNode {
  readonly spec: OpSpec;
  readonly inputs: readonly Tensor[];
  readonly attrs: Attrs;
}

export type Origin =
  | { kind: 'input'; name: string }
  | { kind: 'const'; data: TypedData }
  | { kind: 'param'; param: Parameter }
  | { kind: 'op'; node: OpNode };

let nextId = 0;

export class Tensor {
  readonly id = nextId++;

  constructor(
    readonly shape: readonly Dim[],
    readonly dtype: DType,
    readonly origin: Origin,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  toString(): string {
    const what = this.origin.kind === 'op' ? this.origin.node.spec.type : this.origin.kind;
    return `Tensor<${what} ${this.dtype}${shapeToString(this.shape)}>`;
  }

  /** A named graph input, fed at run time. Use `sym('batch')` for sizes that vary between runs. */
  static input(name: string, shape: readonly Dim[], dtype: DType = 'float32'): Tensor {
    return new Tensor(shape, dtype, { kind: 'input', name });
  }

  /** A constant baked into the graph (small values: scalars, index lists, masks). */
  static constant(data: TypedData | number[], shape: readonly number[], dtype: DType = 'float32'): Tensor {
    const typed = Array.isArray(data) ? toTyped(data, dtype) : data;
    const size = shape.reduce((a, b) => a * b, 1);
    if (typed.length !== size) {
      throw new Error(`constant of shape ${shapeToString(shape)} needs ${size} values, got ${typed.length}`);
    }
    return new Tensor(shape, dtype, { kind: 'const', data: typed });
  }

  static scalar(value: number, dtype: DType = 'float32'): Tensor {
    return Tensor.constant([value], [], dtype);
  }
}

export function toTyped(values: readonly number[], dtype: DType): TypedData {
  switch (dtype) {
    case 'float32':
      return Float32Array.from(values);
    case 'int64':
      return BigInt64Array.from(values, (v) => BigInt(Math.trunc(v)));
    case 'int32':
      return Int32Array.from(values);
    case 'bool':
      return Uint8Array.from(values, (v) => (v ? 1 : 0));
    default:
      throw new Error(`constants of dtype ${dtype} are given as typed arrays`);
  }
}

export function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float16' || dtype === 'bfloat16';
}

/** Creates the output Tensor of a primitive op. */
export function makeOp(spec: OpSpec, inputs: readonly Tensor[], shape: readonly Dim[], dtype: DType, attrs: Attrs = {}): Tensor {
  return new Tensor(shape, dtype, { kind: 'op', node: { spec, inputs, attrs } });
}

/** Every op output reachable from `roots`, each once (iteratively: graphs are deep). */
export function reachableOps(roots: readonly Tensor[]): Tensor[] {
  const seen = new Set<Tensor>();
  const stack = [...roots];
  const found: Tensor[] = [];
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    if (t.origin.kind !== 'op') continue;
    found.push(t);
    stack.push(...t.origin.node.inputs);
  }
  return found;
}
