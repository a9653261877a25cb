// A named weight. Frozen weights that come from a checkpoint stay in the file: the emitted ONNX graph
// points at their bytes by offset. Weights held in memory (initialised, trained, converted) are inline
// initializers when frozen and graph inputs when trainable.

import { shapeToString } from './dims.ts';
import { float16ToFloat32, bfloat16ToFloat32, type SafetensorsEntry, SafetensorsFile } from './safetensors.ts';
import { Tensor } from './tensor.ts';

export type ParameterSource =
  | { kind: 'file'; file: SafetensorsFile; entry: SafetensorsEntry }
  | { kind: 'data'; data: Float32Array };

export class Parameter {
  source: ParameterSource | undefined;
  trainable = false;
  private cachedLeaf: Tensor | undefined;

  constructor(
    readonly name: string,
    readonly shape: readonly number[],
  ) {}

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** The leaf Tensor standing for this weight in every graph that uses it. */
  get tensor(): Tensor {
    this.cachedLeaf ??= new Tensor(this.shape, 'float32', { kind: 'param', param: this });
    return this.cachedLeaf;
  }

  /** `sameBytes` accepts a stored shape with the same elements in the same order (conv [C,C,1,1] for linear [C,C]). */
  bindFile(file: SafetensorsFile, entry: SafetensorsEntry, sameBytes = false): void {
    const count = entry.shape.reduce((a, b) => a * b, 1);
    if (!sameBytes || count !== this.size) this.checkShape(entry.shape, `tensor "${entry.name}" in ${file.path}`);
    if (!['F32', 'F16', 'BF16'].includes(entry.dtype)) {
      throw new Error(`tensor "${entry.name}" in ${file.path} has dtype ${entry.dtype}; parameter ${this.name} needs a float`);
    }
    this.source = { kind: 'file', file, entry };
  }

  /** Sets the value in memory (copied), e.g. from an initialiser or an optimiser step. */
  setValue(data: Float32Array): void {
    if (data.length !== this.size) {
      throw new Error(`parameter ${this.name} ${shapeToString(this.shape)} needs ${this.size} values, got ${data.length}`);
    }
    this.source = { kind: 'data', data: new Float32Array(data) };
  }

  /** The value as float32, read from the checkpoint on first use when it lives in a file. */
  value(): Float32Array {
    const source = this.source;
    if (!source) throw new Error(`parameter ${this.name} has no value: it was neither loaded nor initialised`);
    if (source.kind === 'data') return source.data;
    const raw = source.file.read(source.entry.name).data;
    if (source.entry.dtype === 'F32') return raw as Float32Array;
    return source.entry.dtype === 'F16' ? float16ToFloat32(raw as Uint16Array) : bfloat16ToFloat32(raw as Uint16Array);
  }

  /** Moves a file-backed value into memory, so that it can be changed (training). */
  materialize(): Float32Array {
    if (this.source?.kind !== 'data') this.source = { kind: 'data', data: new Float32Array(this.value()) };
    return this.source.data;
  }

  private checkShape(found: readonly number[], where: string): void {
    if (found.length !== this.shape.length || found.some((d, i) => d !== this.shape[i])) {
      throw new Error(`${where}: expected shape ${shapeToString(this.shape)} for ${this.name}, found ${shapeToString(found)}`);
    }
  }
}
