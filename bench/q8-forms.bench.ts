// Experiment: which ONNX form of an int8-weight layer ONNX Runtime runs fastest on this CPU, at the
// SD-1.5 UNet's sizes at 512² (batch 2). Each case is a one-layer graph built by hand, timed after a
// warm-up; CPU time is reported beside wall time because the development machine's cores are shared.
//
//   npx tsx bench/q8-forms.bench.ts [--runs 5] [--cases conv3x3,linear] [--threads 2]
//
// Forms: fp32 (the reference), `integer` (DynamicQuantizeLinear → MatMulInteger / ConvInteger with
// int8 weights, then Cast and one Mul by x_scale · w_scale; ORT's optimiser may fuse the MatMul
// chain into DynamicQuantizeMatMul), `integer-u8` (the same with uint8 weights: ConvInteger's older type
// constraint), and `qdq` (DynamicQuantizeLinear → DequantizeLinear feeding the float op, weights
// DequantizeLinear'd per channel, which ORT's QDQ fusions may turn into an integer kernel).

import os from 'node:os';
import { parseArgs } from 'node:util';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { relativeError } from './compare.ts';

const { onnx } = onnxProto;
const F32 = 1;
const U8 = 2;
const I8 = 3;

interface Layer {
  kind: 'conv' | 'linear';
  /** conv: x [B, Cin, H, W], w [Cout, Cin, k, k]; linear: x [B, L, Cin], w [Cout, Cin]. */
  x: number[];
  w: number[];
}

const CASES: Record<string, Layer> = {
  conv3x3: { kind: 'conv', x: [2, 320, 64, 64], w: [320, 320, 3, 3] },
  'conv3x3-1280': { kind: 'conv', x: [2, 1280, 16, 16], w: [1280, 1280, 3, 3] },
  conv1x1: { kind: 'conv', x: [2, 320, 64, 64], w: [320, 320, 1, 1] },
  linear: { kind: 'linear', x: [2, 4096, 320], w: [1280, 320] },
  'linear-ff': { kind: 'linear', x: [2, 4096, 1280], w: [320, 1280] },
};

type Form = 'fp32' | 'integer' | 'integer-u8' | 'qdq' | 'im2col' | 'im2col-nchw';
const FORMS: Form[] = ['fp32', 'integer', 'integer-u8', 'qdq', 'im2col', 'im2col-nchw'];

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

function tensor(name: string, dims: number[], dataType: number, data: ArrayBufferView) {
  return { name, dims, dataType, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** Per output channel: int8 (or uint8 around 128) values and the scale of each channel. */
function quantizeRows(w: Float32Array, rows: number, unsigned: boolean): { q: Int8Array | Uint8Array; scale: Float32Array } {
  const per = w.length / rows;
  const scale = new Float32Array(rows);
  const q = unsigned ? new Uint8Array(w.length) : new Int8Array(w.length);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let i = 0; i < per; i++) m = Math.max(m, Math.abs(w[r * per + i]));
    scale[r] = m / 127 || 1;
    for (let i = 0; i < per; i++) q[r * per + i] = Math.round(w[r * per + i] / scale[r]) + (unsigned ? 128 : 0);
  }
  return { q, scale };
}

function buildModel(layer: Layer, form: Form): Uint8Array {
  const nodes: Record<string, unknown>[] = [];
  const inits: Record<string, unknown>[] = [];
  const node = (opType: string, input: string[], output: string[], attribute: Record<string, unknown>[] = [], domain = '') => nodes.push({ opType, input, output, attribute, domain });
  const cout = layer.w[0];
  const w = rand(layer.w.reduce((a, b) => a * b, 1), 7);
  const conv = layer.kind === 'conv';
  const k = layer.w[2] ?? 1;
  const convAttrs = conv ? [{ name: 'pads', type: 7, ints: [(k - 1) / 2, (k - 1) / 2, (k - 1) / 2, (k - 1) / 2] }] : [];
  // A linear's weight is stored [Cout, Cin] (PyTorch); MatMul wants [Cin, Cout].
  const wForMatmul = (data: Float32Array | Int8Array | Uint8Array) => {
    const [o, i] = layer.w;
    const t = new (data.constructor as Float32ArrayConstructor)(data.length);
    for (let a = 0; a < o; a++) for (let b = 0; b < i; b++) t[b * o + a] = data[a * i + b];
    return t;
  };
  const wDims = conv ? layer.w : [layer.w[1], layer.w[0]];
  // One slice of the padded input 'xp' per kernel tap (i, j), over the two spatial axes.
  const slices = (k: number, h: number, wd: number, axes: number[]) => {
    const int64 = (name: string, v: number[]) => inits.push(tensor(name, [v.length], 7, BigInt64Array.from(v.map(BigInt))));
    int64('axes', axes);
    const taps: string[] = [];
    for (let i = 0; i < k; i++)
      for (let j = 0; j < k; j++) {
        int64(`st${i}${j}`, [i, j]);
        int64(`en${i}${j}`, [i + h, j + wd]);
        node('Slice', ['xp', `st${i}${j}`, `en${i}${j}`, 'axes'], [`tap${i}${j}`]);
        taps.push(`tap${i}${j}`);
      }
    return taps;
  };
  if (form === 'fp32') {
    inits.push(tensor('w', wDims, F32, conv ? w : wForMatmul(w)));
    node(conv ? 'Conv' : 'MatMul', ['x', 'w'], ['y'], convAttrs);
  } else {
    const unsigned = form === 'integer-u8';
    const { q, scale } = quantizeRows(w, cout, unsigned);
    inits.push(tensor('wq', wDims, unsigned ? U8 : I8, conv ? q : wForMatmul(q as never)));
    inits.push(tensor('ws', [cout], F32, scale));
    inits.push(tensor('wzp', [cout], unsigned ? U8 : I8, unsigned ? new Uint8Array(cout).fill(128) : new Int8Array(cout)));
    node('DynamicQuantizeLinear', ['x'], ['xq', 'xs', 'xzp']);
    if (form === 'im2col' && conv) {
      // NHWC patches of the uint8 activations (padded with their zero point), one MatMulInteger
      // against the weights laid out [k·k·Cin, Cout], then back to NCHW.
      const [b, cin, h, wd] = layer.x;
      const int64 = (name: string, v: number[]) => inits.push(tensor(name, [v.length], 7, BigInt64Array.from(v.map(BigInt))));
      const p = (k - 1) / 2;
      const wt = new Int8Array(q.length);
      for (let o = 0; o < cout; o++) for (let c = 0; c < cin; c++) for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) wt[((i * k + j) * cin + c) * cout + o] = (q as Int8Array)[((o * cin + c) * k + i) * k + j];
      inits[0] = tensor('wq', [k * k * cin, cout], I8, wt);
      node('Transpose', ['xq'], ['xt'], [{ name: 'perm', type: 7, ints: [0, 2, 3, 1] }]);
      int64('pads', [0, p, p, 0, 0, p, p, 0]);
      node('Pad', ['xt', 'pads', 'xzp'], ['xp']);
      const taps = slices(k, h, wd, [1, 2]);
      node('Concat', taps, ['cols'], [{ name: 'axis', type: 2, i: 3 }]);
      int64('colshape', [b, h * wd, k * k * cin]);
      node('Reshape', ['cols', 'colshape'], ['cols2']);
      node('MatMulInteger', ['cols2', 'wq', 'xzp'], ['acc']);
      node('Cast', ['acc'], ['accf'], [{ name: 'to', type: 2, i: F32 }]);
      node('Mul', ['xs', 'ws'], ['s']);
      node('Mul', ['accf', 's'], ['ys']);
      int64('nhwc', [b, h, wd, cout]);
      node('Reshape', ['ys', 'nhwc'], ['y4']);
      node('Transpose', ['y4'], ['y'], [{ name: 'perm', type: 7, ints: [0, 3, 1, 2] }]);
    } else if (form === 'im2col-nchw' && conv) {
      // The same patches kept NCHW ([B, k·k·Cin, H·W]); int8 weights [Cout, k·k·Cin] on the left.
      const [b, cin, h, wd] = layer.x;
      const int64 = (name: string, v: number[]) => inits.push(tensor(name, [v.length], 7, BigInt64Array.from(v.map(BigInt))));
      const p = (k - 1) / 2;
      const wt = new Int8Array(q.length);
      for (let o = 0; o < cout; o++) for (let c = 0; c < cin; c++) for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) wt[o * k * k * cin + (i * k + j) * cin + c] = (q as Int8Array)[((o * cin + c) * k + i) * k + j];
      inits[0] = tensor('wq', [cout, k * k * cin], I8, wt);
      inits.push(tensor('wzp0', [], I8, new Int8Array(1)));
      int64('pads', [0, 0, p, p, 0, 0, p, p]);
      node('Pad', ['xq', 'pads', 'xzp'], ['xp']);
      const taps = slices(k, h, wd, [2, 3]);
      node(taps.length > 1 ? 'Concat' : 'Identity', taps, ['cols'], taps.length > 1 ? [{ name: 'axis', type: 2, i: 1 }] : []);
      int64('colshape', [b, k * k * cin, h * wd]);
      node('Reshape', ['cols', 'colshape'], ['cols2']);
      node('MatMulInteger', ['wq', 'cols2', 'wzp0', 'xzp'], ['acc']);
      node('Cast', ['acc'], ['accf'], [{ name: 'to', type: 2, i: F32 }]);
      int64('shape3', [1, cout, 1]);
      node('Mul', ['xs', 'ws'], ['s']);
      node('Reshape', ['s', 'shape3'], ['s3']);
      node('Mul', ['accf', 's3'], ['ys']);
      int64('nchw', [b, cout, h, wd]);
      node('Reshape', ['ys', 'nchw'], ['y']);
    } else if (form === 'qdq') {
      node('DequantizeLinear', ['xq', 'xs', 'xzp'], ['xdq']);
      node('DequantizeLinear', ['wq', 'ws', 'wzp'], ['wdq'], [{ name: 'axis', type: 2, i: conv ? 0 : 1 }]);
      node(conv ? 'Conv' : 'MatMul', ['xdq', 'wdq'], ['y'], convAttrs);
    } else {
      // Integer product, then y = acc · x_scale · w_scale[c] (channel axis 1 for conv, last for linear).
      if (conv) inits.push(tensor('shape4', [4], 7, BigInt64Array.from([1n, BigInt(cout), 1n, 1n])));
      // ConvInteger takes one weight zero point for all channels (ours are all 0, or all 128 for uint8).
      if (conv) inits.push(tensor('wzp1', [], unsigned ? U8 : I8, unsigned ? Uint8Array.of(128) : new Int8Array(1)));
      node(conv ? 'ConvInteger' : 'MatMulInteger', ['xq', 'wq', 'xzp', conv ? 'wzp1' : 'wzp'], ['acc'], convAttrs);
      node('Cast', ['acc'], ['accf'], [{ name: 'to', type: 2, i: F32 }]);
      node('Mul', ['xs', 'ws'], ['s']);
      if (conv) node('Reshape', ['s', 'shape4'], ['s4']);
      node('Mul', ['accf', conv ? 's4' : 's'], ['y']);
    }
  }
  const valueInfo = (name: string, dims: number[]) => ({ name, type: { tensorType: { elemType: F32, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });
  const model = onnx.ModelProto.create({
    irVersion: 10,
    opsetImport: [{ domain: '', version: 21 }],
    graph: { name: 'q8', node: nodes, initializer: inits, input: [valueInfo('x', layer.x)], output: [{ name: 'y' }] },
  });
  return onnx.ModelProto.encode(model).finish();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function time(layer: Layer, form: Form, runs: number, threads: number): Promise<{ wall: number; cpu: number; err: number } | string> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(buildModel(layer, form), { intraOpNumThreads: threads, graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  } catch (e) {
    return `fails: ${(e as Error).message.split('\n')[0].slice(0, 80)}`;
  }
  const x = new ort.Tensor('float32', rand(layer.x.reduce((a, b) => a * b, 1), 3), layer.x);
  const first = (await session.run({ x })).y.data as Float32Array;
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const c = process.cpuUsage();
    await session.run({ x });
    const u = process.cpuUsage(c);
    wall.push((performance.now() - t) / 1000);
    cpu.push((u.user + u.system) / 1e6);
  }
  await session.release();
  return { wall: median(wall), cpu: median(cpu), err: reference.get(layer) ? relativeError(first, reference.get(layer)!) : 0 };
}

const reference = new Map<Layer, Float32Array>();

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, cases: { type: 'string', default: Object.keys(CASES).join(',') }, threads: { type: 'string', default: '2' }, forms: { type: 'string', default: FORMS.join(',') } } });
  const runs = Number(values.runs);
  const threads = Number(values.threads);
  console.log(`median of ${runs} runs, ${threads} threads; ${os.cpus()[0]?.model}; load average ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}`);
  for (const name of values.cases.split(',')) {
    const layer = CASES[name];
    const ref = await ort.InferenceSession.create(buildModel(layer, 'fp32'), { intraOpNumThreads: threads, logSeverityLevel: 3 });
    reference.set(layer, (await ref.run({ x: new ort.Tensor('float32', rand(layer.x.reduce((a, b) => a * b, 1), 3), layer.x) })).y.data as Float32Array);
    await ref.release();
    for (const form of values.forms.split(',') as Form[]) {
      const r = await time(layer, form, runs, threads);
      console.log(`${name.padEnd(14)} ${form.padEnd(11)} ${typeof r === 'string' ? r : `wall ${r.wall.toFixed(3)} s  CPU ${r.cpu.toFixed(3)} s  rel. error ${r.err.toExponential(1)}`}`);
    }
  }
  console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}`);
}

await main();
