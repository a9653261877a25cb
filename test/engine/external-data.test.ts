// Frozen weights read by offset from a safetensors file (ONNX external data through a hard link in
// the cache folder) give the same results as the same weights held inline, for F32, F16 and BF16.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as E from '../../src/engine/index.ts';
import { SafetensorsFile, bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16, writeSafetensors } from '../../src/engine/safetensors.ts';
import { expectClose, rand } from './helpers.ts';

let dir: string;
const savedCache = process.env.NURI_CACHE;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nuri-external-'));
});
afterAll(() => {
  if (savedCache === undefined) delete process.env.NURI_CACHE;
  else process.env.NURI_CACHE = savedCache;
  rmSync(dir, { recursive: true, force: true });
});

/** conv (F32 weight, F16 bias) → SiLU → linear (BF16 weight, F32 bias) over [N, 2, 4, 4]. */
class TinyModel {
  readonly convWeight = new E.Parameter('conv.weight', [3, 2, 3, 3]);
  readonly convBias = new E.Parameter('conv.bias', [3]);
  readonly linWeight = new E.Parameter('lin.weight', [5, 3 * 2 * 2]);
  readonly linBias = new E.Parameter('lin.bias', [5]);
  readonly all = [this.convWeight, this.convBias, this.linWeight, this.linBias];

  forward(x: E.Tensor): E.Tensor {
    const h = E.silu(E.conv2d(x, this.convWeight.tensor, this.convBias.tensor, { stride: 2, padding: 1 }));
    return E.linear(E.reshape(h, [x.shape[0], -1]), this.linWeight.tensor, this.linBias.tensor);
  }
}

/** Writes the model's weights (F32, F16, BF16, F32) and returns their float32 values as stored. */
function writeWeights(path: string): Record<string, Float32Array> {
  const convWeight = rand(54, 1);
  const convBias = float16ToFloat32(float32ToFloat16(rand(3, 2)));
  const linWeight = bfloat16ToFloat32(float32ToBfloat16(rand(60, 3)));
  const linBias = rand(5, 4);
  writeSafetensors(path, {
    // An unused tensor first, so the weights start at non-zero offsets.
    padding: { dtype: 'F32', shape: [7], data: new Float32Array(7) },
    'conv.weight': { dtype: 'F32', shape: [3, 2, 3, 3], data: convWeight },
    'conv.bias': { dtype: 'F16', shape: [3], data: float32ToFloat16(convBias) },
    'lin.weight': { dtype: 'BF16', shape: [5, 12], data: float32ToBfloat16(linWeight) },
    'lin.bias': { dtype: 'F32', shape: [5], data: linBias },
  });
  return { 'conv.weight': convWeight, 'conv.bias': convBias, 'lin.weight': linWeight, 'lin.bias': linBias };
}

async function runModel(model: TinyModel, xv: Float32Array, options: E.RunOptions = {}, trainable: E.Parameter[] = []): Promise<{ y: Float32Array; graph: E.CompiledGraph }> {
  const x = E.Tensor.input('x', [E.sym('N'), 2, 4, 4]);
  const graph = await E.compile({ inputs: [x], outputs: { y: model.forward(x) }, trainable }, options);
  const r = await graph.run({ x: { data: xv, shape: [2, 2, 4, 4] } });
  expect(r.y.shape).toEqual([2, 5]);
  return { y: r.y.data as Float32Array, graph };
}

describe('weights as external data', () => {
  it('file-backed F32/F16/BF16 weights give the same output as the same weights inline', async () => {
    const path = join(dir, 'tiny.safetensors');
    const values = writeWeights(path);
    const file = SafetensorsFile.open(path);
    const cacheDir = join(dir, 'cache');
    const xv = rand(64, 5);

    const fromFile = new TinyModel();
    for (const p of fromFile.all) p.bindFile(file, file.entry(p.name));
    const external = await runModel(fromFile, xv, { cacheDir });

    const inline = new TinyModel();
    for (const p of inline.all) p.setValue(values[p.name]);
    const reference = await runModel(inline, xv);
    expectClose(external.y, reference.y, 1e-6, 1e-6);

    // The graph lives in the cache folder beside a hard link to the checkpoint; it holds no weights.
    expect(external.graph.graph.externalFiles.size).toBe(1);
    const [graphDir] = readdirSync(join(cacheDir, 'graphs'));
    const folder = join(cacheDir, 'graphs', graphDir);
    // ONNX Runtime's optimised form is written beside it (graph + re-laid-out weights) by a child
    // process after this one, or when asked to.
    expect(readdirSync(folder).filter((f) => f.startsWith('optimized-'))).toEqual([]);
    expect(await E.optimizeCachedGraphs()).toBe(true);
    const files = readdirSync(folder).sort();
    expect(files.filter((f) => !f.startsWith('optimized-'))).toEqual(['model.onnx', 'weights0.safetensors']);
    expect(files.filter((f) => f.startsWith('optimized-')).map((f) => f.split('.').pop()).sort()).toEqual(['json', 'onnx', 'weights']);
    expect(statSync(join(folder, 'weights0.safetensors')).ino).toBe(statSync(path).ino);
    const onnxBytes = readFileSync(join(folder, 'model.onnx'));
    const weightBytes = Buffer.from(values['conv.weight'].buffer);
    expect(onnxBytes.indexOf(weightBytes)).toBe(-1);
    expect(Buffer.from(reference.graph.graph.bytes).indexOf(weightBytes)).toBeGreaterThan(-1); // inline: it does

    // A new session (another process, say) starts from the optimised graph and computes the same.
    E.clearSessionCache();
    const again = await runModel(fromFile, xv, { cacheDir });
    expect(again.graph.session).not.toBe(external.graph.session);
    expectClose(again.y, external.y, 0, 0);
  });

  it('follows $NURI_CACHE, and a trainable file-backed weight is fed its decoded value', async () => {
    const path = join(dir, 'tiny-env.safetensors');
    const values = writeWeights(path);
    const file = SafetensorsFile.open(path);
    process.env.NURI_CACHE = join(dir, 'env-cache');
    const xv = rand(64, 6);

    const model = new TinyModel();
    for (const p of model.all) p.bindFile(file, file.entry(p.name));
    // convBias is F16 in the file: fed as float32 through Parameter.value()
    const { y, graph } = await runModel(model, xv, {}, [model.convBias]);
    expect(graph.graph.inputNames).toEqual(['x', 'conv.bias']);
    expect(readdirSync(join(dir, 'env-cache', 'graphs'))).toHaveLength(1);

    const inline = new TinyModel();
    for (const p of inline.all) p.setValue(values[p.name]);
    expectClose(y, (await runModel(inline, xv)).y, 1e-6, 1e-6);
    expectClose(model.convBias.value(), values['conv.bias'], 0, 0);
    expectClose(model.linWeight.value(), values['lin.weight'], 0, 0);
  });

  it('weights from two files in one graph', async () => {
    const a = join(dir, 'a.safetensors');
    const b = join(dir, 'b.safetensors');
    const values = writeWeights(a);
    writeSafetensors(b, { extra: { dtype: 'F16', shape: [5], data: float32ToFloat16(Float32Array.of(1, 2, 3, 4, 5)) } });
    const model = new TinyModel();
    const fa = SafetensorsFile.open(a);
    for (const p of model.all) p.bindFile(fa, fa.entry(p.name));
    const extra = new E.Parameter('extra', [5]);
    const fb = SafetensorsFile.open(b);
    extra.bindFile(fb, fb.entry('extra'));

    const x = E.Tensor.input('x', [2, 2, 4, 4]);
    const graph = await E.compile({ inputs: [x], outputs: { y: E.add(model.forward(x), extra.tensor) } }, { cacheDir: join(dir, 'two') });
    expect([...graph.graph.externalFiles.keys()].sort()).toEqual(['weights0.safetensors', 'weights1.safetensors']);
    const xv = rand(64, 7);
    const r = await graph.run({ x: { data: xv, shape: [2, 2, 4, 4] } });

    const inline = new TinyModel();
    for (const p of inline.all) p.setValue(values[p.name]);
    const base = (await runModel(inline, xv)).y;
    expectClose(r.y.data as Float32Array, Array.from(base, (v, i) => v + (i % 5) + 1), 1e-6, 1e-6);
  });

  it('a checkpoint reached through a symbolic link is linked by its real path (ONNX Runtime refuses data outside the graph folder)', async () => {
    const real = join(dir, 'real.safetensors');
    const values = writeWeights(real);
    const linked = join(dir, 'linked.safetensors');
    symlinkSync(real, linked);
    const file = SafetensorsFile.open(linked);
    const model = new TinyModel();
    for (const p of model.all) p.bindFile(file, file.entry(p.name));
    const cacheDir = join(dir, 'through-link');
    const xv = rand(64, 8);
    const inline = new TinyModel();
    for (const p of inline.all) p.setValue(values[p.name]);
    const reference = (await runModel(inline, xv)).y;
    expectClose((await runModel(model, xv, { cacheDir })).y, reference, 1e-6, 1e-6);
    const folder = join(cacheDir, 'graphs', readdirSync(join(cacheDir, 'graphs'))[0]);
    expect(lstatSync(join(folder, 'weights0.safetensors')).ino).toBe(statSync(real).ino);

    // A cache an earlier version left, its link made to the symbolic link itself, is mended.
    E.clearSessionCache();
    unlinkSync(join(folder, 'weights0.safetensors'));
    execFileSync('ln', ['-P', linked, join(folder, 'weights0.safetensors')]); // a hard link to the symlink, as link(2) makes
    expect(lstatSync(join(folder, 'weights0.safetensors')).isSymbolicLink()).toBe(true);
    expectClose((await runModel(model, xv, { cacheDir })).y, reference, 1e-6, 1e-6);
    expect(lstatSync(join(folder, 'weights0.safetensors')).ino).toBe(statSync(real).ino);
  });
});
