// A server's first job on a model optimises its sessions in the process without saving them; once
// the runner has been idle for graphBuildIdleMs it has a low-priority child write the optimised
// graphs, so the next load of that model is a warm one without waiting for the server's exit. A
// graph whose build does not fit in the memory available then waits for a later call.
import { existsSync, mkdtempSync, readdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { clearSessionCache, hasPendingGraphBuilds, optimizeCachedGraphs } from '../../src/engine/session.ts';
import { generate } from '../../src/pipelines/generate.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { ModelRegistry } from '../../src/server/models.ts';
import { PipelineCache } from '../../src/server/pipeline-cache.ts';
import { createRunner } from '../../src/server/runner.ts';
import { jobSchemas, parseJobRequest } from '../../src/server/schemas.ts';
import { TINY_SD } from '../fixtures.ts';

/** The free memory session.ts sees: the machine's, unless a test sets `bytes`. */
const freeMemory = vi.hoisted(() => ({ bytes: undefined as number | undefined }));
vi.mock('node:os', async (original) => {
  const os = await original<typeof import('node:os')>();
  return { ...os, freemem: () => freeMemory.bytes ?? os.freemem() };
});

let cacheDir = mkdtempSync(join(tmpdir(), 'nuri-idle-build-'));
process.env.NURI_CACHE = cacheDir; // read when each graph is compiled

function optimisedGraphs(): { folders: number; optimised: number } {
  const folders = readdirSync(join(cacheDir, 'graphs')).map((d) => join(cacheDir, 'graphs', d)).filter((d) => existsSync(join(d, 'model.onnx')));
  return { folders: folders.length, optimised: folders.filter((d) => readdirSync(d).some((f) => /^optimized-.*\.onnx$/.test(f))).length };
}

describe('the server runner', () => {
  it('writes the optimised graphs of a first run once it has been idle, not while a job runs', async () => {
    const models = mkdtempSync(join(tmpdir(), 'nuri-models-'));
    symlinkSync(TINY_SD, join(models, 'tiny-sd'));
    const cache = new PipelineCache(new ModelRegistry(models), 1);
    const runner = createRunner({ registry: cache.registry, cache, graphBuildIdleMs: 200 });
    const { type, params } = parseJobRequest({ type: 'generate', params: { model: 'tiny-sd', prompt: 'a cat', steps: 2, width: 64, height: 64, seed: 1 } }, jobSchemas());
    let during: ReturnType<typeof optimisedGraphs> | undefined;
    await runner({ id: 'job-1', type, params }, {
      signal: new AbortController().signal,
      progress: (p) => {
        if (p.phase === 'sampling') during = optimisedGraphs();
      },
      wantsPreview: () => false,
      readInput: () => Promise.reject(new Error('no inputs')),
    });
    expect(during?.folders).toBeGreaterThanOrEqual(2); // text encoder and UNet, first run
    expect(during?.optimised).toBe(0);
    expect(hasPendingGraphBuilds()).toBe(true);

    const deadline = Date.now() + 90_000;
    let now = optimisedGraphs();
    while (now.optimised < now.folders && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      now = optimisedGraphs();
    }
    expect(now.folders).toBeGreaterThanOrEqual(3); // and the VAE decoder
    expect(now.optimised).toBe(now.folders);
    expect(hasPendingGraphBuilds()).toBe(false);
    await cache.clear();
  });

  it('leaves a graph whose build does not fit in the free memory pending, and builds it once it fits', async () => {
    cacheDir = mkdtempSync(join(tmpdir(), 'nuri-idle-build-memory-'));
    process.env.NURI_CACHE = cacheDir;
    clearSessionCache(); // a first run again, in the new cache
    await generate(StableDiffusion.load(TINY_SD), { prompts: ['a dog'], steps: 1, width: 64, height: 64, seed: 2 });
    expect(hasPendingGraphBuilds()).toBe(true);

    freeMemory.bytes = 1024 * 1024; // 1 MiB: less than 2.5× any graph's weights
    expect(await optimizeCachedGraphs({ withinMemory: true })).toBe(false);
    expect(hasPendingGraphBuilds()).toBe(true);
    expect(optimisedGraphs().optimised).toBe(0);

    freeMemory.bytes = undefined;
    expect(await optimizeCachedGraphs({ withinMemory: true })).toBe(true);
    expect(hasPendingGraphBuilds()).toBe(false);
    const now = optimisedGraphs();
    expect(now.folders).toBeGreaterThanOrEqual(3);
    expect(now.optimised).toBe(now.folders);
  }, 120_000);
});
