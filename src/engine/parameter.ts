// A named weight. Frozen weights that come from a checkpoint stay in the file: the emitted ONNX graph
// points at their bytes by offset. Weights held in memory (initialised, trained, converted) are inline
// initializers when frozen, and graph inputs where a graph is compiled with them trainable (GraphSpec.trainable).

import { shapeToString } from './dims.ts';
import { float16ToFloat32, bfloat16ToFloat32, type SafetensorsEntry, SafetensorsFile } from './safetensors.ts';
import { Tensor } from './tensor.ts';

export type ParameterSource =
  | { kind: 'file'; file: SafetensorsFile; entry: SafetensorsEntry }
  | { kind: 'data'; data: Float32Array };

/** Rows [start, start + count) along a stored tensor's first dimension. */
export interface RowRange {
  start: number;
  count: number;
}

/** The entry narrowed to a row range: same name, offset and length of just those rows' bytes. */
function rowRange(file: SafetensorsFile, entry: SafetensorsEntry, { start, count }: RowRange): SafetensorsEntry {
  const total = entry.shape[0] ?? 0;
  if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count <= 0 || start + count > total) {
    throw new Error(`tensor "${entry.name}" in ${file.path}: rows [${start}, ${start + count}) are outside its ${total} rows`);
  }
  const rowBytes = entry.byteLength / total;
  return { ...entry, shape: [count, ...entry.shape.slice(1)], dataOffset: entry.dataOffset + start * rowBytes, byteLength: count * rowBytes };
}

export class Parameter {
  source: ParameterSource | undefined;
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

  /**
   * `sameBytes` accepts a stored shape with the same elements in the same order (conv [C,C,1,1] for
   * linear [C,C]). `rows` binds a range along the stored tensor's first dimension, which is a
   * contiguous byte range (the q, k or v third of a fused attention in_proj).
   */
  bindFile(file: SafetensorsFile, entry: SafetensorsEntry, sameBytes = false, rows?: RowRange): void {
    if (rows) entry = rowRange(file, entry, rows);
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
    let raw = source.file.read(source.entry.name).data as Float32Array | Uint16Array;
    const start = (source.entry.dataOffset - source.file.entry(source.entry.name).dataOffset) / raw.BYTES_PER_ELEMENT;
    if (start > 0 || raw.length !== this.size) raw = raw.slice(start, start + this.size); // a row range
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
