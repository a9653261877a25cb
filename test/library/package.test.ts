// `import { loadPipeline, generate } from 'nuri'` from another package: a temporary package with
// nuri linked into its node_modules (as `npm install ../nuri` links it) imports the entry under
// plain `node`, generates, cancels with an AbortSignal, and type-checks against the exported types.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const REPO = resolve(import.meta.dirname, '..', '..');

function consumerPackage(): string {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-consumer-'));
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(REPO, join(dir, 'node_modules', 'nuri'), 'dir');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', type: 'module', dependencies: { nuri: `file:${REPO}` } }));
  return dir;
}

const APP = `
import * as nuri from 'nuri';
import { loadPipeline, generate, isAbortError } from 'nuri';
const sd = await loadPipeline();
const steps = [];
const { images, seeds } = await generate(sd, { prompts: ['red apple'], steps: 2, seed: 3, onProgress: (p) => steps.push([p.step, p.total, p.timestep, p.preview()[0].width]) });
const controller = new AbortController();
let aborted;
try {
  await generate(sd, { prompts: ['red apple'], steps: 3, seed: 3, signal: controller.signal, onProgress: () => controller.abort() });
} catch (error) {
  aborted = { name: error.name, isAbort: isAbortError(error) };
}
console.log(JSON.stringify({ names: Object.keys(nuri).sort(), size: [images[0].width, images[0].height], seeds, steps, aborted }));
`;

describe("the package entry ('nuri')", () => {
  it('imports under plain node from another package, generates with progress, and cancels with an AbortError', async () => {
    const dir = consumerPackage();
    writeFileSync(join(dir, 'app.mjs'), APP);
    const r = spawnSync(process.execPath, ['app.mjs'], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { names: string[]; size: number[]; seeds: number[]; steps: number[][]; aborted: unknown };
    const source = Object.keys(await import('../../src/index.ts')).sort();
    expect(out.names).toEqual(source); // index.js re-exports every value src/index.ts does
    expect(out.size).toEqual([64, 64]);
    expect(out.seeds).toEqual([3]);
    expect(out.steps.map(([step, total]) => [step, total])).toEqual([[1, 2], [2, 2]]);
    expect(out.steps[0][2]).toBeGreaterThan(out.steps[1][2]); // timesteps count down
    expect(out.steps[0][3]).toBe(16); // the preview is at latent resolution (64 px ÷ 4)
    expect(out.aborted).toEqual({ name: 'AbortError', isAbort: true });
  });

  it("type-checks a TypeScript consumer against the package's types", () => {
    const dir = consumerPackage();
    writeFileSync(
      join(dir, 'app.ts'),
      `import { loadPipeline, generate, trainLora, type StepProgress, type TrainingProgress } from 'nuri';
const sd = await loadPipeline(undefined, { device: 'cpu' });
const { images } = await generate(sd, { prompts: ['a'], onProgress: (p: StepProgress) => p.preview() });
const width: number = images[0].width;
const run = (signal: AbortSignal) => trainLora({ model: 'm', images: 'dir', out: 'o', rank: 2, signal, onProgress: (p: TrainingProgress) => p.loss });
// @ts-expect-error: prompts must be strings
await generate(sd, { prompts: [1] });
export { width, run };
`,
    );
    // TypeScript sources are the types: a consumer allows .ts import paths, as tsx projects do.
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, allowImportingTsExtensions: true, skipLibCheck: true, types: [] }, files: ['app.ts'] }));
    const r = spawnSync(join(REPO, 'node_modules', '.bin', 'tsc'), ['-p', '.'], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
