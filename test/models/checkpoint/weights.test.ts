// The checkpoint layer's weight-file finder and binder: which file of a folder is picked (plain,
// fp16 variant, sharded index), shards read as one file, and the binder's one-format report.

import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Linear, LayerNorm } from '../../../src/engine/module.ts';
import { readSafetensors, type WritableTensor, writeSafetensors } from '../../../src/engine/safetensors.ts';
import { bindWeights } from '../../../src/models/checkpoint/bind.ts';
import { Weights, findWeights, openWeights } from '../../../src/models/checkpoint/weights.ts';
import { loadVae } from '../../../src/models/checkpoint/components.ts';
import { TINY_SD } from '../../fixtures.ts';
import { errorOf } from '../../support/error-of.ts';

const tmp = mkdtempSync(join(tmpdir(), 'nuri-weights-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let folders = 0;
/** A fresh folder holding the named (empty-content) safetensors files. */
function folderWith(...files: string[]): string {
  const dir = join(tmp, `f${folders++}`);
  mkdirSync(dir);
  for (const f of files) writeSafetensors(join(dir, f), { w: f32([1], [0]) });
  return dir;
}

function f32(shape: number[], values: number[]): WritableTensor {
  return { dtype: 'F32', shape, data: Float32Array.from(values) };
}

describe('findWeights', () => {
  it('prefers the plain file, and takes the fp16 variant when it is the only one', () => {
    const both = folderWith('diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.fp16.safetensors');
    expect(findWeights(both, 'diffusion_pytorch_model')).toBe(join(both, 'diffusion_pytorch_model.safetensors'));
    const half = folderWith('model.fp16.safetensors');
    expect(findWeights(half, 'model')).toBe(join(half, 'model.fp16.safetensors'));
  });

  it('takes the asked variant first, the plain file when the variant is absent', () => {
    const both = folderWith('diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.fp16.safetensors');
    expect(findWeights(both, 'diffusion_pytorch_model', 'fp16')).toBe(join(both, 'diffusion_pytorch_model.fp16.safetensors'));
    const plain = folderWith('model.safetensors');
    expect(findWeights(plain, 'model', 'fp16')).toBe(join(plain, 'model.safetensors'));
  });

  it('finds a sharded index, a single file before it', () => {
    const sharded = folderWith('diffusion_pytorch_model.safetensors.index.json');
    expect(findWeights(sharded, 'diffusion_pytorch_model')).toBe(join(sharded, 'diffusion_pytorch_model.safetensors.index.json'));
    const fp16Sharded = folderWith('model.safetensors', 'model.fp16.safetensors.index.json');
    expect(findWeights(fp16Sharded, 'model', 'fp16')).toBe(join(fp16Sharded, 'model.fp16.safetensors.index.json'));
    expect(findWeights(fp16Sharded, 'model')).toBe(join(fp16Sharded, 'model.safetensors'));
  });

  it('names what it looked for and what is there, and refuses pickles by name', () => {
    const pickle = folderWith();
    writeFileSync(join(pickle, 'diffusion_pytorch_model.bin'), '');
    expect(errorOf(() => findWeights(pickle, 'diffusion_pytorch_model'))).toMatch(
      /^no diffusion_pytorch_model\.safetensors or diffusion_pytorch_model\.fp16\.safetensors \(nor a sharded \.safetensors\.index\.json of them\) in .*\(pickle checkpoints are never loaded.*found: diffusion_pytorch_model\.bin$/,
    );
    expect(errorOf(() => findWeights(join(tmp, 'nowhere'), 'model'))).toMatch(/found: the folder does not exist/);
  });
});

describe('a sharded index', () => {
  /** Two shards and their index, as transformers' save_pretrained(max_shard_size=…) writes them. */
  function sharded(weightMap?: Record<string, string>): string {
    const dir = folderWith();
    writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), { 'fc.weight': f32([2, 3], [1, 2, 3, 4, 5, 6]) });
    writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), { 'fc.bias': f32([2], [7, 8]), 'norm.weight': f32([3], [1, 1, 1]), 'norm.bias': f32([3], [0, 0, 0]) });
    const map = weightMap ?? {
      'fc.weight': 'model-00001-of-00002.safetensors',
      'fc.bias': 'model-00002-of-00002.safetensors',
      'norm.weight': 'model-00002-of-00002.safetensors',
      'norm.bias': 'model-00002-of-00002.safetensors',
    };
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 56 }, weight_map: map }));
    return dir;
  }

  it('reads the shards as one file and binds across them', () => {
    const weights = openWeights(sharded(), 'model');
    expect(weights.files).toHaveLength(2);
    expect(weights.names().sort()).toEqual(['fc.bias', 'fc.weight', 'norm.bias', 'norm.weight']);
    const fc = new Linear('fc', 3, 2);
    const norm = new LayerNorm('norm', 3);
    bindWeights([...fc.parameters(), ...norm.parameters()], weights, { what: 'test model' });
    expect([...fc.weight.value()]).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...fc.bias!.value()]).toEqual([7, 8]);
    expect(fc.bias!.source).toMatchObject({ kind: 'file', file: { path: expect.stringMatching(/model-00002-of-00002\.safetensors$/) } });
  });

  it('refuses an index whose weight_map disagrees with its shards or leaves the folder', () => {
    const wrongShard = sharded({ 'fc.weight': 'model-00002-of-00002.safetensors', 'fc.bias': 'model-00002-of-00002.safetensors' });
    expect(errorOf(() => openWeights(wrongShard, 'model'))).toMatch(/model\.safetensors\.index\.json: the weight_map puts tensor "fc\.weight" in model-00002-of-00002\.safetensors, which does not hold it/);
    const escaping = sharded({ 'fc.weight': '../other.safetensors' });
    expect(errorOf(() => openWeights(escaping, 'model'))).toMatch(/"weight_map" entry "fc\.weight" must name a \.safetensors file beside the index, got "\.\.\/other\.safetensors"/);
    const noMap = sharded();
    writeFileSync(join(noMap, 'model.safetensors.index.json'), '{"metadata": {}}');
    expect(errorOf(() => openWeights(noMap, 'model'))).toMatch(/index\.json: "weight_map" must be an object/);
  });

  it('refuses a tensor stored in two shards', () => {
    const dir = sharded();
    writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), { 'fc.weight': f32([2, 3], [1, 2, 3, 4, 5, 6]), 'fc.bias': f32([2], [0, 0]) });
    expect(errorOf(() => openWeights(dir, 'model'))).toMatch(/tensor "fc\.bias" is in two shards, model-00001-of-00002\.safetensors and model-00002-of-00002\.safetensors/);
  });

  it('loads a real model split into shards with the same values as the single file', () => {
    const dir = folderWith();
    copyFileSync(join(TINY_SD, 'vae', 'config.json'), join(dir, 'config.json'));
    const tensors = [...readSafetensors(join(TINY_SD, 'vae', 'diffusion_pytorch_model.safetensors'))];
    const half = Math.ceil(tensors.length / 2);
    const shards = [tensors.slice(0, half), tensors.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((shard, i) => {
      const name = `diffusion_pytorch_model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(join(dir, name), new Map(shard));
      for (const [tensor] of shard) weightMap[tensor] = name;
    });
    writeFileSync(join(dir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
    const fromShards = loadVae(dir).parameters();
    const fromFile = loadVae(join(TINY_SD, 'vae')).parameters();
    expect(fromShards.map((p) => p.name)).toEqual(fromFile.map((p) => p.name));
    fromShards.forEach((p, i) => expect(p.value()).toEqual(fromFile[i].value()));
  });
});

describe('bindWeights', () => {
  it('reports missing, misshapen and unexpected tensors in one error naming the file and each tensor', () => {
    const dir = folderWith();
    const path = join(dir, 'model.safetensors');
    writeSafetensors(path, { 'fc.weight': f32([3, 2], [1, 2, 3, 4, 5, 6]), 'fc.extra': f32([4], [0, 0, 0, 0]), 'norm.weight': f32([3], [1, 1, 1]), 'norm.bias': f32([3], [0, 0, 0]) });
    const fc = new Linear('fc', 3, 2);
    const norm = new LayerNorm('norm', 3);
    const message = errorOf(() => bindWeights([...fc.parameters(), ...norm.parameters()], Weights.open(path), { what: 'test model' }));
    expect(message.split('\n')).toEqual([
      `cannot load test model from ${path}: 3 problem(s)`,
      `  tensor "fc.weight" in ${path}: expected shape [2, 3] for fc.weight, found [3, 2]`,
      '  missing tensor for fc.bias [2]',
      `  unexpected tensor fc.extra [4] in ${path}`,
    ]);
  });

  it('takes aliases, same-bytes layouts and ignored buffers', () => {
    const dir = folderWith();
    const path = join(dir, 'model.safetensors');
    writeSafetensors(path, { 'proj.weight': f32([2, 3, 1, 1], [1, 2, 3, 4, 5, 6]), 'old.bias': f32([2], [7, 8]), position_ids: f32([1], [0]) });
    const fc = new Linear('fc', 3, 2);
    bindWeights(fc.parameters(), Weights.open(path), {
      what: 'test model',
      aliases: (name) => [name.replace(/^fc\.weight$/, 'proj.weight').replace(/^fc\.bias$/, 'old.bias')],
      sameBytes: (p) => p.shape.length === 2,
      ignore: (name) => name === 'position_ids',
    });
    expect([...fc.weight.value()]).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...fc.bias!.value()]).toEqual([7, 8]);
  });

  it('shows at most twelve lines of each kind and counts the rest', () => {
    const dir = folderWith();
    const path = join(dir, 'model.safetensors');
    writeSafetensors(path, Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`stray.${i}`, f32([1], [0])])));
    const layers = Array.from({ length: 14 }, (_, i) => new LayerNorm(`norm${i}`, 2));
    const message = errorOf(() => bindWeights(layers.flatMap((l) => l.parameters()), Weights.open(path), { what: 'test model' }));
    expect(message).toMatch(/^cannot load test model from .*: 43 problem\(s\)/);
    expect(message).toMatch(/… and 16 more problems\n {2}unexpected tensor stray\.0 \[1\]/);
    expect(message).toMatch(/… and 3 more unexpected tensors$/);
  });
});
