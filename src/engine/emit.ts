// Emits a traced graph as an ONNX ModelProto. Frozen weights that live in safetensors files become
// initializers with external data pointing into those files by offset: the graph carries no copy,
// and models past protobuf's 2 GB limit work. Each file is referred to by a link name; session.ts
// places a hard link with that name beside the written graph (ONNX Runtime only reads external
// data from the model's own folder).

import onnxProto from 'onnx-proto';
import { type Dim, SymDim } from './dims.ts';
import type { Parameter } from './parameter.ts';
import { type WeightDType, quantizeTransposed, weightLevels } from './quantize.ts';
import { type QuantizeItem, writeQuantizedFile } from './quantize-file.ts';
import type { SafetensorsFile } from './safetensors.ts';
import { type Attrs, type DType, type OpNode, Tensor, type TypedData, reachableOps } from './tensor.ts';

const { onnx } = onnxProto;

export const OPSET = 21;
const IR_VERSION = 10;

const ONNX_DTYPE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  bfloat16: 16,
};
const FILE_DTYPE: Record<string, number> = { F32: 1, F16: 10, BF16: 16 };

export interface GraphSpec {
  inputs: readonly Tensor[];
  outputs: Record<string, Tensor>;
  /**
   * Parameters that are graph inputs wherever the graph uses them, fed their current values at each
   * run: what training updates between runs. Every other parameter is a constant of the graph (its
   * checkpoint bytes, or an inline copy). The choice is part of the emitted graph, hence of its cache key.
   */
  trainable?: Iterable<Parameter>;
  /** How ops with more than one ONNX form are emitted; DEFAULT_KERNELS where not given. */
  kernels?: Partial<KernelForms>;
}

/**
 * The ONNX forms of ops that have several (`npm run bench` measures each). They change the graph,
 * not the values, so they are part of what compile() is asked for rather than module state.
 */
export interface KernelForms {
  /** dL/dx of a convolution: a plain Conv with the flipped kernel where it applies (stride 1, no groups), or always a ConvTranspose. */
  convInputGrad: 'conv' | 'convTranspose';
  /**
   * dL/dW of a convolution: im2col and one MatMul; the same patches gathered by a constant index
   * (static sizes only); or one Conv of the input with the output gradient (static spatial sizes
   * only). A form that does not apply falls back to im2col.
   */
  convWeightGrad: 'im2col' | 'gather' | 'conv';
  /**
   * Bytes of forward intermediates that gradients may keep instead of recomputing (attention's P,
   * [B, heads, Lq, Lk] fp32 per layer). Smallest first while the total fits; symbolic sizes are
   * never kept. All kept values are alive together between the forward and the backward, so this
   * adds up to that much to a training step's peak. 0 recomputes everything.
   */
  keptBytes: number;
  /**
   * The forward of an attention layer whose P is kept: ONNX's fused `Attention` (opset 23) returning
   * P, or plain ops (MatMul, Softmax, MatMul) sharing P with the backward.
   */
  keptAttentionForward: 'onnx-attention' | 'plain';
}

export const DEFAULT_KERNELS: Readonly<KernelForms> = { convInputGrad: 'conv', convWeightGrad: 'gather', keptBytes: 512 * 2 ** 20, keptAttentionForward: 'onnx-attention' };

export interface EmitOptions {
  /** 'q8': frozen linear and convolution weights become int8 per output channel (quantize.ts). */
  weights?: WeightDType;
}

/** A weights file the graph's external data points into, written from the checkpoint when missing. */
export interface DerivedFile {
  /** The checkpoint files its contents come from (their identity keys the cache). */
  sources: string[];
  write(path: string): Promise<void>;
}

/** How a frozen weight is laid out as an int8 right-hand operand [K, Cout]. */
export type QuantizedLayout = 'linear' | 'conv';

interface PlannedWeight {
  param: Parameter;
  layout: QuantizedLayout;
  valuesOffset: number;
  scalesOffset: number;
}

export interface EmittedGraph {
  bytes: Uint8Array;
  /** External-data link names → the safetensors files they stand for. */
  externalFiles: Map<string, string>;
  /** External-data file names → files computed from the checkpoint (int8 weights). */
  derivedFiles: Map<string, DerivedFile>;
  /** Names of graph inputs in order: the declared inputs, then the trainable parameters the graph uses. */
  inputNames: string[];
  /** The trainable parameters the graph uses, in the order of their inputs. */
  trainable: Parameter[];
  outputNames: string[];
  /** Bytes of the float convolution weights fixed in the graph: what ONNX Runtime's `all` level re-lays out (session.ts). */
  frozenConvWeightBytes: number;
}

type OnnxAttr = Record<string, unknown>;

export class Emitter {
  private readonly nodes: Record<string, unknown>[] = [];
  private readonly initializers: Record<string, unknown>[] = [];
  private readonly names = new Map<Tensor, string>();
  private readonly symbolSources = new Map<string, { name: string; axis: number }>();
  private readonly dimValues = new Map<string, string>();
  private readonly computedDims = new Map<string, string>();
  /** For each symbolic size (by key), the first emitted value that has it on an axis. */
  private readonly dimCarriers = new Map<string, { name: string; axis: number }>();
  private readonly fileLinks = new Map<SafetensorsFile, string>();
  /** The trainable parameters reached so far (graph inputs). */
  private readonly trainableInputs = new Set<Parameter>();
  private usesContribOps = false;
  private opset = OPSET;
  /** Ops whose intermediate a gradient keeps (planKept), and the value names they kept. */
  private readonly granted = new Set<OpNode>();
  private readonly keptValues = new Map<OpNode, string>();
  private counter = 0;
  private readonly planned: PlannedWeight[] = [];
  private readonly quantized = new Map<string, { values: string; scales: string }>();
  private plannedBytes = 0;
  private readonly levels: number;
  private readonly frozenConvWeights = new Set<Parameter>();

  constructor(
    private readonly declaredInputs: readonly Tensor[],
    readonly kernels: Readonly<KernelForms> = DEFAULT_KERNELS,
    readonly options: EmitOptions = {},
    private readonly trainable: ReadonlySet<Parameter> = new Set(),
  ) {
    this.levels = options.weights === 'q8' ? weightLevels() : 127;
    for (const t of declaredInputs) {
      if (t.origin.kind !== 'input') throw new Error(`graph inputs must be Tensor.input(...), got ${t}`);
      if ([...this.names.values()].includes(t.origin.name)) throw new Error(`graph input "${t.origin.name}" is declared twice`);
      this.names.set(t, t.origin.name);
      t.shape.forEach((d, axis) => {
        if (d instanceof SymDim && d.symbols.length === 1 && d.num === 1 && d.den === 1 && !d.offset) {
          if (!this.symbolSources.has(d.symbols[0])) this.symbolSources.set(d.symbols[0], { name: t.origin.kind === 'input' ? t.origin.name : '', axis });
        }
      });
    }
  }

  /** Whether `node`'s emitter should hand an intermediate to its gradient (then call keep). */
  keeps(node: OpNode): boolean {
    return this.granted.has(node);
  }

  keep(node: OpNode, value: string): void {
    this.keptValues.set(node, value);
  }

  /** The value `node` kept for its gradient, if it was granted and emitted. */
  kept(node: OpNode): string | undefined {
    return this.keptValues.get(node);
  }

  /** Grants the ops' keep requests (OpSpec.keeps) found among the outputs, smallest first, within kernels.keptBytes. */
  private planKept(outputs: readonly Tensor[]): void {
    const requests = new Map<OpNode, number>();
    for (const t of reachableOps(outputs)) {
      const node = (t.origin as { node: OpNode }).node;
      const request = node.spec.keeps?.(node, t);
      if (request) requests.set(request.node, request.bytes);
    }
    let total = 0;
    for (const [node, bytes] of [...requests].sort((a, b) => a[1] - b[1])) {
      if (total + bytes > this.kernels.keptBytes) break;
      total += bytes;
      this.granted.add(node);
    }
  }

  fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  /** The ONNX value name of a tensor, emitting its producers first (iteratively: graphs are deep). */
  value(root: Tensor): string {
    const known = this.names.get(root);
    if (known) return known;
    const stack: Tensor[] = [root];
    while (stack.length) {
      const t = stack[stack.length - 1];
      if (this.names.has(t)) {
        stack.pop();
        continue;
      }
      if (t.origin.kind === 'op') {
        const pending = t.origin.node.inputs.filter((i) => !this.names.has(i));
        if (pending.length) {
          stack.push(...pending);
          continue;
        }
      }
      stack.pop();
      const name = this.emitOne(t);
      this.names.set(t, name);
      t.shape.forEach((d, axis) => d instanceof SymDim && !this.dimCarriers.has(d.key) && this.dimCarriers.set(d.key, { name, axis }));
    }
    return this.names.get(root)!;
  }

  private emitOne(t: Tensor): string {
    const o = t.origin;
    switch (o.kind) {
      case 'input':
        throw new Error(`graph input "${o.name}" is used but not declared among the compiled inputs`);
      case 'const':
        return this.initializer(o.data, t.shape as number[], t.dtype);
      case 'param':
        return this.parameter(o.param);
      case 'op':
        return o.node.spec.emit(this, o.node, t);
    }
  }

  /** Whether `p` is a graph input of this graph rather than a constant. */
  isTrainable(p: Parameter): boolean {
    return this.trainable.has(p);
  }

  private parameter(p: Parameter): string {
    if (this.trainable.has(p)) {
      const taken = [...this.trainableInputs].some((q) => q.name === p.name) || this.declaredInputs.some((t) => this.names.get(t) === p.name);
      if (taken) throw new Error(`trainable parameter "${p.name}" has the same name as another graph input`);
      this.trainableInputs.add(p);
      return p.name;
    }
    const src = p.source;
    if (!src) throw new Error(`parameter ${p.name} has no value: it was neither loaded nor initialised`);
    if (src.kind === 'data') return this.initializer(src.data, p.shape, 'float32', p.name);
    let link = this.fileLinks.get(src.file);
    if (!link) {
      link = `weights${this.fileLinks.size}.safetensors`;
      this.fileLinks.set(src.file, link);
    }
    const stored = this.fresh(`${p.name}_stored`);
    this.initializers.push({
      name: stored,
      dims: p.shape,
      dataType: FILE_DTYPE[src.entry.dtype],
      dataLocation: 1, // EXTERNAL
      externalData: [
        { key: 'location', value: link },
        { key: 'offset', value: String(src.entry.dataOffset) },
        { key: 'length', value: String(src.entry.byteLength) },
      ],
    });
    if (src.entry.dtype === 'F32') return stored;
    return this.node('Cast', [stored], { to: ONNX_DTYPE.float32 });
  }

  /** Notes a float convolution's weight: counted when it is a frozen parameter (not a computed or trainable one). */
  noteConvWeight(w: Tensor): void {
    if (w.origin.kind === 'param' && !this.trainable.has(w.origin.param)) this.frozenConvWeights.add(w.origin.param);
  }

  /** Whether frozen linear and convolution weights are emitted as int8. */
  get quantizesWeights(): boolean {
    return this.options.weights === 'q8';
  }

  /**
   * A frozen weight as int8 [K, Cout] values and float scales [Cout]: a linear's [Cout, K], or a
   * convolution's [Cout, Cin, kh, kw] as K = kh·kw·Cin in NHWC patch order. Weights in checkpoint
   * files go to a derived file written when the session is created; weights in memory are quantised
   * now. Undefined for a trainable weight (it stays a float graph input).
   */
  quantizedWeight(p: Parameter, layout: QuantizedLayout): { values: string; scales: string } | undefined {
    if (this.trainable.has(p) || !p.source) return undefined;
    const key = `${layout}:${p.name}`;
    const known = this.quantized.get(key);
    if (known) return known;
    const cout = p.shape[0];
    const k = p.size / cout;
    let names: { values: string; scales: string };
    if (p.source.kind === 'data') {
      const { values, scales } = quantizeTransposed(p.source.data, cout, layout === 'conv' ? p.shape[1] : k, this.levels);
      names = { values: this.initializer(values, [k, cout], 'int8', `${p.name}_q8`), scales: this.initializer(scales, [cout], 'float32', `${p.name}_scale`) };
    } else {
      const align = (n: number) => Math.ceil(n / 64) * 64;
      const valuesOffset = this.plannedBytes;
      const scalesOffset = align(valuesOffset + p.size);
      this.plannedBytes = align(scalesOffset + 4 * cout);
      this.planned.push({ param: p, layout, valuesOffset, scalesOffset });
      const external = (name: string, dims: number[], dtype: DType, offset: number, length: number) => {
        this.initializers.push({
          name,
          dims,
          dataType: ONNX_DTYPE[dtype],
          dataLocation: 1,
          externalData: [
            { key: 'location', value: this.q8FileName() },
            { key: 'offset', value: String(offset) },
            { key: 'length', value: String(length) },
          ],
        });
        return name;
      };
      names = {
        values: external(this.fresh(`${p.name}_q8`), [k, cout], 'int8', valuesOffset, p.size),
        scales: external(this.fresh(`${p.name}_scale`), [cout], 'float32', scalesOffset, 4 * cout),
      };
    }
    this.quantized.set(key, names);
    return names;
  }

  /** The derived int8 weights file's name: it says the level range, which the graph bytes must key. */
  private q8FileName(): string {
    return `weights-q8-l${this.levels}.bin`;
  }

  /** Writes every planned int8 weight (quantize-file.ts: one at a time per thread, so memory stays near a tensor's float copy each). */
  private writeQuantized(path: string): Promise<void> {
    const items = this.planned.map(({ param, layout, valuesOffset, scalesOffset }) => {
      const { file, entry } = param.source as { file: { path: string }; entry: { dataOffset: number; dtype: string } };
      if (entry.dtype !== 'F32' && entry.dtype !== 'F16' && entry.dtype !== 'BF16') throw new Error(`${file.path}: ${param.name} is ${entry.dtype}; int8 weights are made from F32, F16 or BF16 tensors`);
      const rows = param.shape[0];
      return { file: file.path, offset: entry.dataOffset, dtype: entry.dtype, count: param.size, rows, cin: layout === 'conv' ? param.shape[1] : param.size / rows, levels: this.levels, valuesOffset, scalesOffset } satisfies QuantizeItem;
    });
    return writeQuantizedFile(path, this.plannedBytes, items);
  }

  initializer(data: TypedData, shape: readonly number[], dtype: DType, hint = 'const'): string {
    const name = this.fresh(hint);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.initializers.push({ name, dims: shape, dataType: ONNX_DTYPE[dtype], rawData: bytes });
    return name;
  }

  /** Appends one ONNX node and returns the name of its (first) output. */
  node(opType: string, inputs: string[], attrs: Attrs = {}, options: { domain?: string } = {}): string {
    return this.nodeOutputs(opType, inputs, attrs, { ...options, outputs: 1 })[0];
  }

  /**
   * Appends one ONNX node and returns its outputs' names: `outputs` is their count, or which of
   * them to produce (the others are left out, named ''). `opset`: the version the op needs.
   */
  nodeOutputs(opType: string, inputs: string[], attrs: Attrs = {}, options: { domain?: string; outputs: number | readonly boolean[]; opset?: number }): string[] {
    const wanted = typeof options.outputs === 'number' ? new Array<boolean>(options.outputs).fill(true) : options.outputs;
    const outputs = wanted.map((w) => (w ? this.fresh(opType) : ''));
    if (options.domain === 'com.microsoft') this.usesContribOps = true;
    if (options.opset) this.opset = Math.max(this.opset, options.opset);
    this.nodes.push({
      opType,
      domain: options.domain ?? '',
      input: inputs,
      output: outputs,
      attribute: Object.entries(attrs)
        .filter(([, v]) => v !== undefined)
        .map(([name, v]) => attribute(name, v!)),
    });
    return outputs;
  }

  /** A 1-D int64 tensor holding these dims, computing symbolic ones from the inputs' shapes. */
  shape(dims: readonly Dim[]): string {
    if (dims.every((d) => typeof d === 'number')) return this.initializer(BigInt64Array.from(dims as number[], BigInt), [dims.length], 'int64', 'shape');
    return this.node('Concat', dims.map((d) => this.dim(d)), { axis: 0 });
  }

  /** A 1-element int64 tensor holding one dim. */
  dim(d: Dim): string {
    if (typeof d === 'number') return this.initializer(BigInt64Array.of(BigInt(d)), [1], 'int64', 'dim');
    const cached = this.dimValues.get(d.key);
    if (cached) return cached;
    // A size read off a value that has it is exact where arithmetic on the inputs' sizes is not:
    // a stride-2 conv rounds 9 up to 5, while H/2 computes 4.
    const carrier = this.dimCarriers.get(d.key);
    if (carrier) {
      const read = this.node('Shape', [carrier.name], { start: carrier.axis, end: carrier.axis + 1 });
      this.dimValues.set(d.key, read);
      return read;
    }
    const computed = this.computedDims.get(d.key);
    if (computed) return computed;
    let value: string | undefined;
    for (const s of d.symbols) {
      const src = this.symbolSources.get(s);
      if (!src) throw new Error(`symbolic size "${s}" is not the size of any axis of the graph's inputs`);
      const axis = this.node('Shape', [src.name], { start: src.axis, end: src.axis + 1 });
      value = value === undefined ? axis : this.node('Mul', [value, axis]);
    }
    if (d.num !== 1) value = this.node('Mul', [value!, this.dim(d.num)]);
    if (d.den !== 1) value = this.node('Div', [value!, this.dim(d.den)]);
    if (d.offset) value = this.node('Add', [value!, this.dim(d.offset)]);
    this.computedDims.set(d.key, value!);
    return value!;
  }

  /** Runtime shape of a value (for gradients that must match an input's shape exactly). */
  shapeOf(t: Tensor): string {
    return this.node('Shape', [this.value(t)]);
  }

  /**
   * Removes the nodes none of whose outputs reach the graph's outputs, then the initializers no
   * node reads. An op that picks its form late leaves its operands' producers behind: an int8
   * product reads the int8 copy of W, not the Transpose(W) emitted before it, and ONNX Runtime folds
   * such dead constants before removing them (2.5 s of a q8 SD-1.5 UNet's first session went to
   * transposing 270M unused floats).
   */
  private dropUnused(outputNames: readonly string[]): void {
    const live = new Set(outputNames);
    const kept: Record<string, unknown>[] = [];
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const node = this.nodes[i];
      if (!(node.output as string[]).some((o) => live.has(o))) continue;
      kept.push(node);
      for (const input of node.input as string[]) live.add(input);
    }
    this.nodes.splice(0, this.nodes.length, ...kept.reverse());
    const initializers = this.initializers.filter((t) => live.has(t.name as string));
    this.initializers.splice(0, this.initializers.length, ...initializers);
  }

  build(outputs: Record<string, Tensor>): EmittedGraph {
    this.planKept(Object.values(outputs));
    const outputNames: string[] = [];
    const graphOutputs: Record<string, unknown>[] = [];
    const renames = new Map<string, string>();
    for (const [name, t] of Object.entries(outputs)) {
      const inner = this.value(t);
      // A node's output takes the caller's name directly (an Identity would copy it on every run);
      // inputs, initializers and values requested twice go through an Identity.
      if (t.origin.kind === 'op' && !renames.has(inner)) renames.set(inner, name);
      else this.nodes.push({ opType: 'Identity', input: [renames.get(inner) ?? inner], output: [name] });
      outputNames.push(name);
      graphOutputs.push(valueInfo(name, t));
    }
    if (renames.size) {
      const rename = (v: string) => renames.get(v) ?? v;
      for (const node of this.nodes) {
        node.input = (node.input as string[]).map(rename);
        node.output = (node.output as string[]).map(rename);
      }
    }
    this.dropUnused(outputNames);
    const trainable = [...this.trainableInputs];
    const inputNames = new Set([...this.declaredInputs.map((t) => this.names.get(t)!), ...trainable.map((p) => p.name)]);
    const clash = outputNames.find((name) => inputNames.has(name));
    if (clash) throw new Error(`graph output "${clash}" has the same name as a graph input`);
    const inputs = [...this.declaredInputs.map((t) => valueInfo(this.names.get(t)!, t)), ...trainable.map((p) => valueInfo(p.name, p.tensor))];
    const opsetImport = [{ domain: '', version: this.opset }];
    if (this.usesContribOps) opsetImport.push({ domain: 'com.microsoft', version: 1 });
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      producerName: 'nuri',
      opsetImport,
      graph: { name: 'nuri', node: this.nodes, initializer: this.initializers, input: inputs, output: graphOutputs },
    });
    const externalFiles = new Map<string, string>();
    for (const [file, link] of this.fileLinks) externalFiles.set(link, file.path);
    const derivedFiles = new Map<string, DerivedFile>();
    if (this.planned.length) {
      const sources = [...new Set(this.planned.map(({ param }) => (param.source as { file: { path: string } }).file.path))];
      derivedFiles.set(this.q8FileName(), { sources, write: (path) => this.writeQuantized(path) });
    }
    return {
      bytes: onnx.ModelProto.encode(model).finish(),
      externalFiles,
      derivedFiles,
      inputNames: [...this.declaredInputs.map((t) => this.names.get(t)!), ...trainable.map((p) => p.name)],
      trainable,
      outputNames,
      frozenConvWeightBytes: [...this.frozenConvWeights].reduce((bytes, p) => bytes + 4 * p.size, 0),
    };
  }
}

export function emitGraph(spec: GraphSpec, options: EmitOptions = {}): EmittedGraph {
  return new Emitter(spec.inputs, { ...DEFAULT_KERNELS, ...spec.kernels }, options, new Set(spec.trainable)).build(spec.outputs);
}

function valueInfo(name: string, t: Tensor): Record<string, unknown> {
  const dim = t.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d.key.replace(/[^A-Za-z0-9_]/g, '_') }));
  return { name, type: { tensorType: { elemType: ONNX_DTYPE[t.dtype], shape: { dim } } } };
}

function attribute(name: string, v: Exclude<Attrs[string], undefined>): OnnxAttr {
  const AttrType = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: AttrType.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'boolean') return { name, type: AttrType.INT, i: v ? 1 : 0 };
  if (typeof v === 'number') return Number.isInteger(v) ? { name, type: AttrType.INT, i: v } : { name, type: AttrType.FLOAT, f: v };
  if (Array.isArray(v)) return { name, type: AttrType.INTS, ints: v };
  return { name, type: AttrType.FLOAT, f: v.float };
}

export { ONNX_DTYPE };
