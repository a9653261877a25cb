// `npm run bench`: the engine's overhead over ONNX Runtime itself, and the cost of conv backward.
// For each case: median time through the engine (traced, emitted, cached session) and through a
// one-node ORT session built by hand, and their ratio. Then the 3×3 conv's input and weight
// gradients in each emitted form, as multiples of the forward time.

import os from 'node:os';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import * as E from '../src/engine/index.ts';

const { onnx } = onnxProto;
const REPEATS = Number(process.env.BENCH_REPEATS ?? 7);
/** Engine and hand-built sessions run in turn: with spinning threads each would slow the other. */
const RUN: E.RunOptions = { spinning: false };

interface Timing {
  wallMs: number;
  cpuMs: number;
}

/**
 * Medians of wall and CPU time for each function, run in turn (a, b, a, b, …) so that both see the
 * same machine load. CPU time (user + system of this process) is steadier on a shared machine.
 */
async function timeInterleaved(fns: (() => Promise<unknown>)[], repeats = REPEATS): Promise<Timing[]> {
  for (const fn of fns) await fn(); // warm-up: the first run allocates
  const samples = fns.map(() => ({ wall: [] as number[], cpu: [] as number[] }));
  for (let r = 0; r < repeats; r++) {
    for (const [i, fn] of fns.entries()) {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await fn();
      samples[i].wall.push(performance.now() - t0);
      const cpu = process.cpuUsage(cpu0);
      samples[i].cpu.push((cpu.user + cpu.system) / 1000);
    }
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return samples.map((s) => ({ wallMs: median(s.wall), cpuMs: median(s.cpu) }));
}

function randomData(n: number, seed: number): Float32Array {
  return new E.Generator(seed).randn(n);
}

type Info = { name: string; shape: number[] };
/** A single-node ONNX model built without the engine: the baseline. */
async function directSession(op: string, inputs: Info[], initializers: (Info & { data: Float32Array })[], outputs: Info[], attrs: Record<string, unknown>[] = [], domain = '') {
  const vi = (i: Info) => ({ name: i.name, type: { tensorType: { elemType: 1, shape: { dim: i.shape.map((d) => ({ dimValue: d })) } } } });
  const model = onnx.ModelProto.create({
    irVersion: 10,
    opsetImport: [{ domain: '', version: 21 }, ...(domain ? [{ domain, version: 1 }] : [])],
    graph: {
      name: 'direct',
      node: [{ opType: op, domain, input: [...inputs, ...initializers].map((i) => i.name), output: outputs.map((o) => o.name), attribute: attrs }],
      initializer: initializers.map((i) => ({ name: i.name, dims: i.shape, dataType: 1, rawData: new Uint8Array(i.data.buffer) })),
      input: inputs.map(vi),
      output: outputs.map(vi),
    },
  });
  // The same threads as the engine's sessions, so the two differ only in what the engine adds.
  return ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), {
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    intraOpNumThreads: E.defaultThreads(),
    extra: { session: { 'intra_op.allow_spinning': '0' } },
  });
}

const ints = (name: string, v: number[]) => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: v });
const int = (name: string, v: number) => ({ name, type: onnx.AttributeProto.AttributeType.INT, i: v });

function frozen(name: string, shape: number[], seed: number): E.Parameter {
  const p = new E.Parameter(name, shape);
  p.setValue(randomData(p.size, seed));
  return p;
}

interface Row {
  case: string;
  engine: Timing;
  ort: Timing;
}

async function row(name: string, engine: () => Promise<unknown>, ort: () => Promise<unknown>): Promise<Row> {
  const [e, o] = await timeInterleaved([engine, ort]);
  return { case: name, engine: e, ort: o };
}

async function convCase(): Promise<Row> {
  const shape = [1, 320, 64, 64];
  const xData = randomData(320 * 64 * 64, 1);
  const w = frozen('w', [320, 320, 3, 3], 2);
  const b = frozen('b', [320], 3);
  const x = E.Tensor.input('x', shape);
  const g = await E.compile({ inputs: [x], outputs: { y: E.conv2d(x, w.tensor, b.tensor, { padding: 1 }) } }, RUN);
  const direct = await directSession('Conv', [{ name: 'x', shape }], [{ name: 'w', shape: [320, 320, 3, 3], data: w.value() }, { name: 'b', shape: [320], data: b.value() }], [{ name: 'y', shape }], [ints('pads', [1, 1, 1, 1])]);
  const feedX = new ort.Tensor('float32', xData, shape);
  return row('conv 3×3, 1×320×64×64 → 320', () => g.run({ x: { data: xData, shape } }), () => direct.run({ x: feedX }));
}

async function matmulCase(): Promise<Row> {
  const n = 1024;
  const aData = randomData(n * n, 4);
  const w = frozen('w', [n, n], 5);
  const a = E.Tensor.input('a', [n, n]);
  const g = await E.compile({ inputs: [a], outputs: { y: E.matmul(a, w.tensor) } }, RUN);
  const direct = await directSession('MatMul', [{ name: 'a', shape: [n, n] }], [{ name: 'w', shape: [n, n], data: w.value() }], [{ name: 'y', shape: [n, n] }]);
  const feed = new ort.Tensor('float32', aData, [n, n]);
  return row('matmul 1024×1024 · 1024×1024', () => g.run({ a: { data: aData, shape: [n, n] } }), () => direct.run({ a: feed }));
}

async function attentionCase(fused: boolean): Promise<Row> {
  const [batch, lq, lk, dim, heads] = [2, 4096, 77, 320, 8];
  const qData = randomData(batch * lq * dim, 6);
  const kData = randomData(batch * lk * dim, 7);
  const vData = randomData(batch * lk * dim, 8);
  E.fusedKernels.attention = fused;
  const q = E.Tensor.input('q', [batch, lq, dim]);
  const k = E.Tensor.input('k', [batch, lk, dim]);
  const v = E.Tensor.input('v', [batch, lk, dim]);
  const g = await E.compile({ inputs: [q, k, v], outputs: { y: E.attention(q, k, v, heads) } }, RUN);
  E.fusedKernels.attention = true;
  const direct = await directSession(
    'MultiHeadAttention',
    [{ name: 'q', shape: [batch, lq, dim] }, { name: 'k', shape: [batch, lk, dim] }, { name: 'v', shape: [batch, lk, dim] }],
    [],
    [{ name: 'y', shape: [batch, lq, dim] }],
    [int('num_heads', heads)],
    'com.microsoft',
  );
  const feeds = { q: new ort.Tensor('float32', qData, [batch, lq, dim]), k: new ort.Tensor('float32', kData, [batch, lk, dim]), v: new ort.Tensor('float32', vData, [batch, lk, dim]) };
  return row(
    `attention 2×4096 q, 77 k, 8 heads, 320 (${fused ? 'fused MHA' : 'plain ops'})`,
    () => g.run({ q: { data: qData, shape: [batch, lq, dim] }, k: { data: kData, shape: [batch, lk, dim] }, v: { data: vData, shape: [batch, lk, dim] } }),
    () => direct.run(feeds),
  );
}

/** The conv's backward pass: input and weight gradients in each emitted form, against its forward. */
async function convBackward(): Promise<void> {
  const shape = [1, 320, 64, 64];
  const xData = randomData(320 * 64 * 64, 9);
  const gData = randomData(320 * 64 * 64, 10);
  const w = frozen('w', [320, 320, 3, 3], 11);
  const x = E.Tensor.input('x', shape);
  const gy = E.Tensor.input('gy', shape);
  const forward = await E.compile({ inputs: [x], outputs: { y: E.conv2d(x, w.tensor, undefined, { padding: 1 }) } }, RUN);
  const feeds = { x: { data: xData, shape }, gy: { data: gData, shape } };
  const graphs: { label: string; run: () => Promise<unknown> }[] = [{ label: 'forward', run: () => forward.run({ x: feeds.x }) }];
  for (const input of ['convTranspose', 'conv'] as const) {
    const [gx] = E.grad(E.conv2d(x, w.tensor, undefined, { padding: 1 }), [x], gy);
    const graph = await E.compile({ inputs: [gy], outputs: { gx }, kernels: { convInputGrad: input } }, RUN);
    graphs.push({ label: `input gradient, ${input === 'conv' ? 'Conv with the flipped kernel' : 'ConvTranspose'}`, run: () => graph.run({ gy: feeds.gy }) });
  }
  for (const weight of ['conv', 'im2col', 'gather'] as const) {
    const [gw] = E.grad(E.conv2d(x, w.tensor, undefined, { padding: 1 }), [w.tensor], gy);
    const graph = await E.compile({ inputs: [x, gy], outputs: { gw }, kernels: { convWeightGrad: weight }, trainable: [w] }, RUN);
    const labels = { conv: 'big-kernel Conv', im2col: 'im2col + one MatMul', gather: 'one Gather of the patches + one MatMul' };
    graphs.push({ label: `weight gradient, ${labels[weight]}`, run: () => graph.run(feeds) });
  }
  const timings = await timeInterleaved(graphs.map((g) => g.run));
  const [fwd] = timings;
  console.log(`\nconv 3×3 backward, 1×320×64×64 → 320 (interleaved; multiples of the forward, wall / CPU)`);
  graphs.forEach((g, i) => {
    const t = timings[i];
    console.log(`  ${g.label.padEnd(44)} ${t.wallMs.toFixed(1).padStart(7)} ms  ${(t.wallMs / fwd.wallMs).toFixed(2)}× / ${(t.cpuMs / fwd.cpuMs).toFixed(2)}×`);
  });
}

async function main(): Promise<void> {
  console.log(`Nuri engine benchmark — ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, onnxruntime-node ${ort.env.versions.common}`);
  console.log(`median of ${REPEATS} interleaved runs after one warm-up; load average ${os.loadavg()[0].toFixed(1)}\n`);
  const rows = [await convCase(), await matmulCase(), await attentionCase(true), await attentionCase(false)];
  const width = Math.max(...rows.map((r) => r.case.length));
  console.log(`${'case'.padEnd(width)}  engine ms  ORT ms  engine/ORT (wall)  engine/ORT (CPU)`);
  for (const r of rows) {
    const wall = r.engine.wallMs / r.ort.wallMs;
    const cpu = r.engine.cpuMs / r.ort.cpuMs;
    console.log(`${r.case.padEnd(width)}  ${r.engine.wallMs.toFixed(1).padStart(9)}  ${r.ort.wallMs.toFixed(1).padStart(6)}  ${wall.toFixed(3).padStart(17)}  ${cpu.toFixed(3).padStart(16)}`);
  }
  await convBackward();
}

await main();
