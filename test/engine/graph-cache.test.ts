// The graph cache's bound: least recently used folders go first, what only the cache holds is what
// counts, and folders in use or used within the hour stay.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as E from '../../src/engine/index.ts';
import { DEFAULT_CACHE_MAX_GB, MIN_IDLE_MS, cacheMaxBytes, graphFolders, pruneGraphCache } from '../../src/engine/graph-cache.ts';
import { writeSafetensors } from '../../src/engine/safetensors.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nuri-graph-cache-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HOUR = 60 * 60 * 1000;
const hash = (n: number) => n.toString(16).padStart(24, '0');

/** A graph folder `hash(n)` holding `bytes` of its own, last used `ageMs` before `now`. */
function folder(graphs: string, n: number, bytes: number, ageMs: number, now: number): string {
  const path = join(graphs, hash(n));
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, 'model.onnx'), Buffer.alloc(bytes));
  const when = new Date(now - ageMs);
  utimesSync(path, when, when);
  return path;
}

describe('graph cache bound', () => {
  it('removes the least recently used folders until within the bound, keeping those in use or used within the hour', () => {
    const graphs = join(dir, 'prune', 'graphs');
    const now = Date.now();
    folder(graphs, 1, 400, 5 * HOUR, now); // oldest, in use by this process
    folder(graphs, 2, 300, 4 * HOUR, now);
    folder(graphs, 3, 200, 3 * HOUR, now);
    folder(graphs, 4, 500, 2 * HOUR, now);
    folder(graphs, 5, 900, MIN_IDLE_MS / 2, now); // used half an hour ago
    mkdirSync(join(graphs, 'not-a-graph')); // anything else under graphs/ is left alone
    writeFileSync(join(graphs, 'not-a-graph', 'x'), Buffer.alloc(5000));

    // 2,300 bytes of graphs, 1,800 allowed: 2 then 3 go (500 bytes); 1 is older but in use.
    const removed = pruneGraphCache(graphs, { maxBytes: 1800, inUse: new Set([hash(1)]), now });
    expect(removed).toEqual([hash(2), hash(3)]);
    expect(readdirSync(graphs).sort()).toEqual([hash(1), hash(4), hash(5), 'not-a-graph']);

    // Over the bound with nothing idle long enough: everything stays.
    expect(pruneGraphCache(graphs, { maxBytes: 0, inUse: new Set([hash(1), hash(4)]), now })).toEqual([]);
    // Within the bound: nothing goes, however old.
    expect(pruneGraphCache(graphs, { maxBytes: 10_000, now: now + 100 * HOUR })).toEqual([]);
  });

  it("counts a hard link to a checkpoint only once the checkpoint is gone", () => {
    const graphs = join(dir, 'links', 'graphs');
    const now = Date.now();
    const path = folder(graphs, 7, 10, 2 * HOUR, now);
    const checkpoint = join(dir, 'links', 'unet.safetensors');
    writeFileSync(checkpoint, Buffer.alloc(1000));
    linkSync(checkpoint, join(path, 'weights0.safetensors'));
    utimesSync(path, new Date(now - 2 * HOUR), new Date(now - 2 * HOUR));
    expect(graphFolders(graphs).map((f) => f.bytes)).toEqual([10]);
    expect(pruneGraphCache(graphs, { maxBytes: 100, now })).toEqual([]);

    rmSync(checkpoint); // the cache's link now holds the bytes alone
    expect(graphFolders(graphs).map((f) => f.bytes)).toEqual([1010]);
    expect(pruneGraphCache(graphs, { maxBytes: 100, now })).toEqual([hash(7)]);
  });

  it('reads the bound from NURI_CACHE_MAX_GB and names the variable when it is malformed', () => {
    expect(cacheMaxBytes(undefined)).toBe(DEFAULT_CACHE_MAX_GB * 2 ** 30);
    expect(cacheMaxBytes('0.5')).toBe(2 ** 29);
    for (const bad of ['0', '-1', 'lots', '1e400x']) expect(() => cacheMaxBytes(bad)).toThrow(/NURI_CACHE_MAX_GB: expected a positive number of gigabytes/);
  });

  it('a new graph folder trims the cache; a reused one is marked as used', async () => {
    const cacheDir = join(dir, 'live');
    const graphs = join(cacheDir, 'graphs');
    const now = Date.now();
    folder(graphs, 9, 2 ** 20, 48 * HOUR, now); // a stale megabyte
    const saved = process.env.NURI_CACHE_MAX_GB;
    process.env.NURI_CACHE_MAX_GB = String(0.5 / 1024); // half a megabyte
    try {
      const path = join(dir, 'w.safetensors');
      writeSafetensors(path, { w: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } });
      const file = E.SafetensorsFile.open(path);
      const w = new E.Parameter('w', [2]);
      w.bindFile(file, file.entry('w'));
      const compileOnce = async () => {
        const x = E.Tensor.input('x', [2]);
        const graph = await E.compile({ inputs: [x], outputs: { y: E.mul(x, w.tensor) } }, { cacheDir, cacheOptimizedGraphs: false });
        expect((await graph.run({ x: { data: new Float32Array([3, 4]), shape: [2] } })).y.data).toEqual(new Float32Array([3, 8]));
        return graph;
      };
      await compileOnce();
      await new Promise((resolve) => setTimeout(resolve, 20)); // the prune runs once the turn yields
      const [own] = readdirSync(graphs);
      expect(readdirSync(graphs)).toEqual([own]); // the stale folder went, the new one stayed

      const old = new Date(now - 5 * HOUR);
      utimesSync(join(graphs, own!), old, old);
      E.clearSessionCache();
      await compileOnce();
      expect(statSync(join(graphs, own!)).mtimeMs).toBeGreaterThan(now - HOUR);
      expect(existsSync(join(graphs, hash(9)))).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.NURI_CACHE_MAX_GB;
      else process.env.NURI_CACHE_MAX_GB = saved;
    }
  });
});
