// A server's first job on a model optimises its sessions in the process without saving them; once
// the runner has been idle for graphBuildIdleMs it has a low-priority child write the optimised
// graphs, so the next load of that model is a warm one without waiting for the server's exit.
import { existsSync, mkdtempSync, readdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hasPendingGraphBuilds } from '../../src/engine/session.ts';
import { ModelRegistry } from '../../src/server/models.ts';
import { PipelineCache } from '../../src/server/pipeline-cache.ts';
import { createRunner } from '../../src/server/runner.ts';
import { jobSchemas, parseJobRequest } from '../../src/server/schemas.ts';
import { TINY_SD } from '../fixtures.ts';

const cacheDir = mkdtempSync(join(tmpdir(), 'nuri-idle-build-'));
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
});
