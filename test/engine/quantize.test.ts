// int8 weights (dtype 'q8'): the per-channel quantiser against values worked by hand, and the
// emitted integer forms of linear and convolution layers (weights in memory and in a safetensors
// file, strides, padding, symbolic sizes) against the same layers in fp32.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import onnxProto from 'onnx-proto';
import { join } from 'node:path';
import * as E from '../../src/engine/index.ts';
import { emitGraph } from '../../src/engine/emit.ts';
import { SafetensorsFile, bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16, writeSafetensors } from '../../src/engine/safetensors.ts';
import { TransposedQuantizer } from '../../src/engine/quantize.ts';
import { writeQuantizedFile } from '../../src/engine/quantize-file.ts';
// @ts-expect-error: a plain-JS build script without type declarations
import { assemble } from '../../scripts/build-wasm.mjs';
import { relativeError } from '../../bench/compare.ts';
import { rand } from './helpers.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nuri-q8-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('quantizeRows', () => {
  it('scales each output channel by its own largest |w| and rounds to the nearest level', () => {
    // Row 0: max 1 → scale 1/127; -0.5·127 = -63.5 rounds to -63 (JS rounds half up), 0.25·127 = 31.75 → 32.
    // Row 1: all zero → scale 1, values 0. Row 2: max 2 → scale 2/127; 1 → 63.5 → 64; 0.01 → 0.635 → 1.
    const { values, scales } = E.quantizeRows(Float32Array.of(1, -0.5, 0.25, 0, 0, 0, -2, 1, 0.01), 3);
    expect([...values]).toEqual([127, -63, 32, 0, 0, 0, -127, 64, 1]);
    expect(scales[0]).toBeCloseTo(1 / 127, 7);
    expect(scales[1]).toBe(1);
    expect(scales[2]).toBeCloseTo(2 / 127, 7);
  });

  it('keeps 7 bits when asked (x86 without VNNI)', () => {
    const { values, scales } = E.quantizeRows(Float32Array.of(0.5, -1, 0.26), 1, 63);
    expect([...values]).toEqual([32, -63, 16]); // 0.5·63 = 31.5 → 32, 0.26·63 = 16.38 → 16
    expect(scales[0]).toBeCloseTo(1 / 63, 7);
  });

  it('refuses rows that do not divide the values, and non-finite weights', () => {
    expect(() => E.quantizeRows(new Float32Array(5), 2)).toThrow(/do not split into 2 rows/);
    expect(() => E.quantizeRows(Float32Array.of(1, Number.NaN), 1)).toThrow(/row 0 holds a non-finite weight/);
  });

  it('lays a conv weight out in NHWC patch order and transposes to [K, Cout]', () => {
    // w[o, c, i, j] = 1000·o + 100·c + 10·i + j for [2, 3, 2, 2], every value exact in int8 after
    // scaling: each row's largest is its last, 1000·o + 211 → 127.
    const w = Float32Array.from({ length: 24 }, (_, n) => {
      const [o, c, i, j] = [Math.floor(n / 12), Math.floor(n / 4) % 3, Math.floor(n / 2) % 2, n % 2];
      return 1000 * o + 100 * c + 10 * i + j;
    });
    const { values, scales } = E.quantizeTransposed(w, 2, 3);
    const byRow = E.quantizeRows(w, 2);
    expect([...scales]).toEqual([...byRow.scales]);
    // values[k, o] with k = (i·2 + j)·3 + c: the patch of output o in NHWC order
    for (let o = 0; o < 2; o++)
      for (let c = 0; c < 3; c++)
        for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) expect(values[((i * 2 + j) * 3 + c) * 2 + o]).toBe(byRow.values[((o * 3 + c) * 2 + i) * 2 + j]);
    // A linear [Cout, K] is one tap of K channels: a plain transpose.
    expect([...E.quantizeTransposed(Float32Array.of(1, 2, 3, 4, 5, 6), 2, 3, 127).values]).toEqual([...transposed(E.quantizeRows(Float32Array.of(1, 2, 3, 4, 5, 6), 2).values, 2, 3)]);
    expect(() => E.quantizeTransposed(new Float32Array(12), 2, 4)).toThrow(/do not split into 4 channels/);
  });

  it('matches the three-pass form on shapes larger than its 64-row blocks, in byte and in 4-row word stores', () => {
    for (const cout of [70, 72]) {
      const [cin, taps] = [5, 9];
      const w = rand(cout * cin * taps, 3);
      const { values, scales } = E.quantizeTransposed(w, cout, cin);
      const patchOrder = new Float32Array(w.length);
      for (let o = 0; o < cout; o++) for (let c = 0; c < cin; c++) for (let t = 0; t < taps; t++) patchOrder[(o * taps + t) * cin + c] = w[(o * cin + c) * taps + t];
      const reference = E.quantizeRows(patchOrder, cout);
      expect([...scales]).toEqual([...reference.scales]);
      expect([...values]).toEqual([...transposed(reference.values, cout, cin * taps)]);
      expect(Math.min(...values)).toBeLessThan(-100); // both signs reach the word stores
    }
  });
});

describe('quantizeTransposed (WebAssembly)', () => {
  it("is built from the committed text: each of the engine's .wasm is its .wat assembled (npm run build:wasm)", async () => {
    const engine = join(import.meta.dirname, '..', '..', 'src', 'engine');
    const texts = readdirSync(engine).filter((name) => name.endsWith('.wat'));
    expect(texts).toEqual(expect.arrayContaining(['quantize.wat', 'adamw.wat']));
    for (const text of texts) {
      const built: Uint8Array = await assemble(join(engine, text));
      expect(Buffer.from(built).equals(readFileSync(join(engine, text.replace(/\.wat$/, '.wasm')))), text).toBe(true);
    }
  });

  it('widens every half float exactly as the checkpoint reader does, and bfloat16 too', () => {
    const quantizer = new TransposedQuantizer(1, 65536, 65536, 127);
    const bits = Uint16Array.from({ length: 65536 }, (_, i) => i); // every half, NaNs, infinities and subnormals included
    for (const [dtype, reference] of [['F16', float16ToFloat32], ['BF16', bfloat16ToFloat32]] as const) {
      quantizer.halves(1).set(new Uint8Array(bits.buffer));
      quantizer.widen(dtype, 1);
      const widened = quantizer.floats(1);
      expect(Buffer.from(widened.buffer, widened.byteOffset, widened.byteLength).equals(Buffer.from(reference(bits).buffer)), dtype).toBe(true);
    }
  });

  it('names the row of a NaN or an infinity in any block, and scales an all-zero row by 1', () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const w = rand(100 * 3, 41);
      w[90 * 3 + 1] = bad; // row 90: the second block
      expect(() => E.quantizeTransposed(w, 100, 3)).toThrow(/row 90 holds a non-finite weight/);
    }
    const { values, scales } = E.quantizeTransposed(Float32Array.of(0, 0, 0, 3, -1.5, 0), 2, 3);
    expect([...scales]).toEqual([1, Math.fround(3 / 127)]);
    expect([...values]).toEqual([0, 127, 0, -63, 0, 0]); // −1.5 · 127/3 = −63.5 → −63 (half up)
  });
});

describe('writeQuantizedFile', () => {
  it('writes the same bytes split across worker threads as on one thread, from F32, F16 and BF16 tensors, a block of rows at a time', async () => {
    const conv = rand(136 * 6 * 9, 31); // [136, 6, 3, 3]: blocks of 64, 64 and 8 rows
    const linear = rand(24 * 50, 32); // [24, 50]
    const half = rand(70 * 12, 33); // [70, 12], stored as F16: blocks of 64 and 6 rows
    const brain = rand(20 * 13, 34); // [20, 13], stored as BF16 (13 values a row: the widening's tail)
    const source = join(dir, 'to-quantise.safetensors');
    writeSafetensors(source, {
      conv: { dtype: 'F32', shape: [136, 6, 3, 3], data: conv },
      linear: { dtype: 'F32', shape: [24, 50], data: linear },
      half: { dtype: 'F16', shape: [70, 12], data: float32ToFloat16(half) },
      brain: { dtype: 'BF16', shape: [20, 13], data: float32ToBfloat16(brain) },
    });
    const file = SafetensorsFile.open(source);
    let at = 0;
    const place = (bytes: number) => ((at += bytes), at - bytes);
    const item = (name: string, rows: number, cin: number) => {
      const e = file.entry(name);
      const count = e.shape.reduce((a, b) => a * b, 1);
      return { file: source, offset: e.dataOffset, dtype: e.dtype as 'F32' | 'F16' | 'BF16', count, rows, cin, levels: 127, valuesOffset: place(count), scalesOffset: place(4 * rows) };
    };
    const items = [item('conv', 136, 6), item('linear', 24, 50), item('half', 70, 12), item('brain', 20, 13)];
    const inline = join(dir, 'q8-inline.bin');
    const threaded = join(dir, 'q8-threads.bin');
    await writeQuantizedFile(inline, at, items, { threads: 1 });
    await writeQuantizedFile(threaded, at, items, { threads: 2, parallelFrom: 0 });
    const bytes = readFileSync(inline);
    expect(bytes.length).toBe(at);
    expect(readFileSync(threaded).equals(bytes)).toBe(true);
    // and they are quantizeTransposed's values and scales where the plan put them
    const expected = E.quantizeTransposed(conv, 136, 6);
    expect([...new Int8Array(bytes.buffer, bytes.byteOffset + items[0].valuesOffset, items[0].count)]).toEqual([...expected.values]);
    expect([...new Float32Array(bytes.buffer.slice(bytes.byteOffset + items[0].scalesOffset, bytes.byteOffset + items[0].scalesOffset + 4 * 136))]).toEqual([...expected.scales]);
    const halfValues = file.read('half').data as Uint16Array;
    expect([...new Int8Array(bytes.buffer, bytes.byteOffset + items[2].valuesOffset, items[2].count)]).toEqual([...E.quantizeTransposed(float16ToFloat32(halfValues), 70, 12).values]);
    const brainValues = file.read('brain').data as Uint16Array;
    expect([...new Int8Array(bytes.buffer, bytes.byteOffset + items[3].valuesOffset, items[3].count)]).toEqual([...E.quantizeTransposed(bfloat16ToFloat32(brainValues), 20, 13).values]);
    file.close();
  });
});

/** [rows, n] → [n, rows]. */
function transposed(values: Int8Array, rows: number, n: number): Int8Array {
  const out = new Int8Array(values.length);
  for (let r = 0; r < rows; r++) for (let i = 0; i < n; i++) out[i * rows + r] = values[r * n + i];
  return out;
}


describe('q8 layers against fp32', () => {
  // conv 3×3 stride 1 pad 1 → conv 3×3 stride 2 pad 1 → 1×1 conv → linear over channels; symbolic sizes.
  const params = {
    c1: new E.Parameter('c1.weight', [24, 8, 3, 3]),
    b1: new E.Parameter('c1.bias', [24]),
    c2: new E.Parameter('c2.weight', [32, 24, 3, 3]),
    c3: new E.Parameter('c3.weight', [16, 32, 1, 1]),
    lin: new E.Parameter('lin.weight', [40, 16]),
    linBias: new E.Parameter('lin.bias', [40]),
  };
  const forward = (x: E.Tensor) => {
    let h = E.silu(E.conv2d(x, params.c1.tensor, params.b1.tensor, { padding: 1 }));
    h = E.silu(E.conv2d(h, params.c2.tensor, undefined, { stride: 2, padding: 1 }));
    h = E.conv2d(h, params.c3.tensor);
    const [b, c] = h.shape;
    const tokens = E.transpose(E.reshape(h, [b, c, -1]), [0, 2, 1]); // [B, HW, C]
    return E.linear(tokens, params.lin.tensor, params.linBias.tensor);
  };
  const x = E.Tensor.input('x', [E.sym('B'), 8, E.sym('H'), E.sym('W')]);
  const feeds = { x: { data: rand(2 * 8 * 10 * 12, 9), shape: [2, 8, 10, 12] } };

  async function run(dtype: E.WeightDType, cacheDir: string): Promise<Float32Array> {
    const graph = await E.compile({ inputs: [x], outputs: { y: forward(x) } }, { dtype, cacheDir });
    const out = (await graph.run(feeds)).y;
    await graph.release();
    expect(out.shape).toEqual([2, 5 * 6, 40]);
    return out.data as Float32Array;
  }

  it('weights in memory: within 2% (relative L2) of fp32, and integer ops in the graph', async () => {
    let seed = 20;
    for (const p of Object.values(params)) p.setValue(rand(p.size, seed++));
    const fp32 = await run('fp32', dir);
    const q8 = await run('q8', dir);
    const error = relativeError(q8, fp32);
    expect(error).toBeGreaterThan(0); // the weights really were rounded
    expect(error).toBeLessThan(0.02);
    const { graph } = onnxProto.onnx.ModelProto.decode(emitGraph({ inputs: [x], outputs: { y: forward(x) } }, { weights: 'q8' }).bytes);
    const ops = graph!.node!.map((n) => n.opType);
    expect(ops.filter((op) => op === 'MatMulInteger')).toHaveLength(4);
    expect(ops.filter((op) => op === 'DynamicQuantizeLinear')).toHaveLength(4);
    expect(ops).not.toContain('Conv');
    expect(ops).not.toContain('MatMul');
    // Nothing is left of the float forms: no node whose outputs no one reads (the linear's
    // Transpose(W) was emitted before the int8 product took its place), no float weight.
    const read = new Set([...graph!.node!.flatMap((n) => n.input!), ...graph!.output!.map((o) => o.name!)]);
    expect(graph!.node!.filter((n) => !n.output!.some((o) => read.has(o))).map((n) => n.opType)).toEqual([]);
    expect(graph!.initializer!.filter((t) => !read.has(t.name!))).toEqual([]);
    expect(graph!.initializer!.map((t) => t.name).filter((name) => /^(c\d|lin)\.weight_\d+$/.test(name!))).toEqual([]);
  });

  it('weights in a safetensors file: the int8 file is derived once into the cache, same result as from memory', async () => {
    const path = join(dir, 'layers.safetensors');
    const values = Object.fromEntries(Object.values(params).map((p) => [p.name, p.value()]));
    writeSafetensors(path, Object.fromEntries(Object.values(params).map((p) => [p.name, { dtype: 'F32' as const, shape: [...p.shape], data: values[p.name] }])));
    const fromMemory = await run('q8', dir);
    const file = SafetensorsFile.open(path);
    for (const p of Object.values(params)) p.bindFile(file, file.entry(p.name));
    const cacheDir = join(dir, 'cache');
    const fromFile = await run('q8', cacheDir);
    expect(relativeError(fromFile, fromMemory)).toBeLessThan(1e-6);
    const graphs = readdirSync(join(cacheDir, 'graphs'));
    expect(graphs).toHaveLength(1);
    expect(readdirSync(join(cacheDir, 'graphs', graphs[0])).filter((n) => /^weights-q8-l(127|63)\.bin$/.test(n))).toHaveLength(1);
    expect(relativeError(await run('q8', cacheDir), fromFile)).toBe(0); // second session: from the cache
  });
});
