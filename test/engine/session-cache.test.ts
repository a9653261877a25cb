// The on-disk graph cache: keyed on the weights' content identity as well as their path (a
// checkpoint rewritten in place is not served from the old optimised graph), safe for two
// processes building the same graph at once (each writes its own temporary files, one publishes,
// the other removes its copy, neither reads a half-built entry), and cleaned of the temporary
// files of killed processes. A graph's first run optimises its session itself; a child process
// writes the optimised graph after it exits (or when asked), and a child that fails leaves no cache.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as E from '../../src/engine/index.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');

// Large enough (8 KB) for ONNX Runtime to move it into the optimised graph's external weights file.
const [OUT, IN] = [64, 32];
const X = Float32Array.from({ length: 2 * IN }, (_, i) => (i % 7) - 3);

function writeWeights(path: string, scale: number): void {
  const w = Float32Array.from({ length: OUT * IN }, (_, i) => ((i % 11) - 5) * scale);
  E.writeSafetensors(path, { w: { dtype: 'F32', shape: [OUT, IN], data: w } });
}

/** y = x·Wᵀ with W read from the file by offset (external data in the cache). */
async function run(path: string, cacheDir: string): Promise<Float32Array> {
  const file = E.SafetensorsFile.open(path);
  const w = new E.Parameter('w', [OUT, IN]);
  w.bindFile(file, file.entry('w'));
  const x = E.Tensor.input('x', [2, IN]);
  const graph = await E.compile({ inputs: [x], outputs: { y: E.linear(x, w.tensor) } }, { cacheDir });
  const out = (await graph.run({ x: X })).y.data as Float32Array;
  await graph.release();
  file.close();
  return out;
}

/** A child script's lines that compile y = x·Wᵀ on this cache, run it and print the output as JSON (leaving `graph`). */
function childRun(weights: string, cacheDir: string): string {
  return `import * as E from ${JSON.stringify(join(ROOT, 'src', 'engine', 'index.ts'))};
const file = E.SafetensorsFile.open(${JSON.stringify(weights)});
const w = new E.Parameter('w', [${OUT}, ${IN}]);
w.bindFile(file, file.entry('w'));
const x = E.Tensor.input('x', [2, ${IN}]);
const graph = await E.compile({ inputs: [x], outputs: { y: E.linear(x, w.tensor) } }, { cacheDir: ${JSON.stringify(cacheDir)} });
console.log(JSON.stringify([...(await graph.run({ x: Float32Array.from(${JSON.stringify([...X])}) })).y.data as Float32Array]));`;
}

const graphFolders = (cacheDir: string) => readdirSync(join(cacheDir, 'graphs')).map((d) => join(cacheDir, 'graphs', d));

describe('graph cache', () => {
  it('is not stale when the weights are rewritten in place or replaced', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-cache-key-'));
    const cacheDir = join(dir, 'cache');
    const path = join(dir, 'w.safetensors');
    writeWeights(path, 1);
    const first = await run(path, cacheDir);
    writeWeights(path, 2); // same header and offsets, same inode, new values
    E.clearSessionCache();
    expect(await run(path, cacheDir)).toEqual(first.map((v) => 2 * v));
    writeWeights(join(dir, 'other.safetensors'), 3);
    renameSync(join(dir, 'other.safetensors'), path); // a new file under the old name
    E.clearSessionCache();
    expect(await run(path, cacheDir)).toEqual(first.map((v) => 3 * v));
    expect(graphFolders(cacheDir)).toHaveLength(3);
    E.clearSessionCache();
    await run(path, cacheDir);
    expect(graphFolders(cacheDir)).toHaveLength(3); // unchanged weights: the same entry again
  });

  it('lets two processes build the same graph at once: both succeed, one copy stays, no temporary file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-cache-race-'));
    const cacheDir = join(dir, 'cache');
    const weights = join(dir, 'w.safetensors');
    writeWeights(weights, 1);
    const script = join(dir, 'child.mts');
    // Each child says it is ready, waits for "go", then compiles and prints its output.
    writeFileSync(
      script,
      `import { existsSync, writeFileSync } from 'node:fs';
writeFileSync(${JSON.stringify(dir)} + '/ready-' + process.pid, '');
while (!existsSync(${JSON.stringify(join(dir, 'go'))})) await new Promise((r) => setTimeout(r, 2));
${childRun(weights, cacheDir)}
await graph.release();
if (!(await E.optimizeCachedGraphs())) throw new Error('optimised graph not published');
`,
    );
    const children = [0, 1].map(() => spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));
    const results = children.map(
      (child) =>
        new Promise<{ code: number | null; out: string; err: string }>((done) => {
          let [out, err] = ['', ''];
          child.stdout.on('data', (d) => (out += d));
          child.stderr.on('data', (d) => (err += d));
          child.on('close', (code) => done({ code, out, err }));
        }),
    );
    const exited = children.map((c) => new Promise<void>((done) => c.on('exit', () => done())));
    let anyExited = false;
    void Promise.race(exited).then(() => (anyExited = true));
    while (!anyExited && readdirSync(dir).filter((n) => n.startsWith('ready-')).length < 2) await new Promise((r) => setTimeout(r, 5));
    writeFileSync(join(dir, 'go'), '');
    const [a, b] = await Promise.all(results);
    expect(a.err + b.err).not.toMatch(/Error/);
    expect([a.code, b.code]).toEqual([0, 0]);
    expect(a.out).toBe(b.out);
    expect(JSON.parse(a.out)).toEqual([...(await run(weights, join(dir, 'fresh-cache')))]);
    const [folder] = graphFolders(cacheDir);
    const files = readdirSync(folder);
    expect(files.filter((f) => f.includes('.tmp'))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.weights'))).toHaveLength(1);
    expect(files.filter((f) => f.startsWith('optimized-') && f.endsWith('.onnx'))).toHaveLength(1);
    expect(existsSync(join(cacheDir, 'graph-optimizer.lock'))).toBe(false);
  });

  it('writes the optimised graph in a child after the first run exits; later runs load it and compute the same', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-cache-after-'));
    const cacheDir = join(dir, 'cache');
    const weights = join(dir, 'w.safetensors');
    writeWeights(weights, 1);
    const script = join(dir, 'first.mts');
    writeFileSync(script, childRun(weights, cacheDir));
    const first = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, encoding: 'utf8' });
    expect(first.status).toBe(0);
    const [folder] = graphFolders(cacheDir);
    const published = () => readdirSync(folder).some((f) => f.startsWith('optimized-') && f.endsWith('.onnx'));
    // The child starts once its parent has gone: the graph appears shortly after, complete.
    for (let waited = 0; !published() && waited < 60_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    expect(published()).toBe(true);
    E.clearSessionCache();
    expect(JSON.stringify([...(await run(weights, cacheDir))])).toBe(first.stdout.trim());
    expect(readdirSync(folder).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('runs on when the child cannot write the optimised graph: no cache, nothing half-written, the next run the same', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-cache-fail-'));
    const cacheDir = join(dir, 'cache');
    const path = join(dir, 'w.safetensors');
    writeWeights(path, 1);
    const first = await run(path, cacheDir);
    const [folder] = graphFolders(cacheDir);
    // The child will find the graph's weights gone (the cache folder emptied under it, say).
    const link = readdirSync(folder).find((f) => f.endsWith('.safetensors'))!;
    rmSync(join(folder, link));
    expect(await E.optimizeCachedGraphs()).toBe(false);
    expect(readdirSync(folder).filter((f) => f.startsWith('optimized-'))).toEqual([]);
    expect(existsSync(join(cacheDir, 'graph-optimizer.lock'))).toBe(false);
    E.clearSessionCache();
    expect(await run(path, cacheDir)).toEqual(first);
    expect(await E.optimizeCachedGraphs()).toBe(true); // the next run schedules it again, and it works
    E.clearSessionCache();
    expect(await run(path, cacheDir)).toEqual(first);
  });

  it("takes over a dead builder's lock", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-cache-lock-'));
    const cacheDir = join(dir, 'cache');
    const path = join(dir, 'w.safetensors');
    writeWeights(path, 1);
    await run(path, cacheDir);
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    writeFileSync(join(cacheDir, 'graph-optimizer.lock'), String(dead));
    expect(await E.optimizeCachedGraphs()).toBe(true);
    expect(existsSync(join(cacheDir, 'graph-optimizer.lock'))).toBe(false);
  });

  it("removes a killed process's temporary files and orphaned optimised weights on the next build", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-cache-left-'));
    const cacheDir = join(dir, 'cache');
    const path = join(dir, 'w.safetensors');
    writeWeights(path, 1);
    await run(path, cacheDir);
    await E.optimizeCachedGraphs();
    const [folder] = graphFolders(cacheDir);
    const published = readdirSync(folder).find((f) => f.endsWith('.weights'))!;
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    const leftovers = [`model.onnx.${dead}.0a1b2c3d.tmp`, published.replace(/\.\d+\.weights$/, `.onnx.${dead}.tmp`), published.replace(/\.\d+\.weights$/, `.${dead}.weights`)];
    for (const name of leftovers) writeFileSync(join(folder, name), 'partial');
    E.clearSessionCache();
    await run(path, cacheDir);
    for (const name of leftovers) expect(existsSync(join(folder, name))).toBe(false);
    expect(existsSync(join(folder, published))).toBe(true);
  });
});
