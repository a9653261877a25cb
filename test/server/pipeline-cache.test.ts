// The resident pipeline cache: a second job on a model reuses the loaded pipeline, the least
// recently used one goes beyond --max-loaded, and never one a job still holds.
import { mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { generate } from '../../src/index.ts';
import { ModelRegistry } from '../../src/server/models.ts';
import { PipelineCache } from '../../src/server/pipeline-cache.ts';
import { TINY_SD } from '../fixtures.ts';

function registry(): ModelRegistry {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-models-'));
  symlinkSync(TINY_SD, join(dir, 'tiny-sd'));
  return new ModelRegistry(dir);
}

it('keeps the most recently used pipelines, and never evicts one a job holds', async () => {
  const cache = new PipelineCache(registry(), 1);
  const first = await cache.acquire({ model: 'default' });
  first.release();
  const again = await cache.acquire({ model: 'default' });
  expect(again.sd).toBe(first.sd); // no second load
  expect(cache.loaded()).toHaveLength(1);

  // Held by a job: a pipeline for another model goes over the bound rather than evict it.
  const tiny = await cache.acquire({ model: 'tiny-sd' });
  expect(cache.loaded()).toHaveLength(2);
  const { images } = await generate(again.sd, { prompts: ['a red apple'], steps: 1, seed: 1 });
  expect(images[0].width).toBe(64);
  again.release();
  expect(cache.loaded()).toHaveLength(1);
  tiny.release();

  // Back to the default model: the tiny one, least recently used, goes; the default loads anew and works.
  const reloaded = await cache.acquire({ model: 'default' });
  expect(reloaded.sd).not.toBe(first.sd);
  expect(cache.loaded()).toEqual([JSON.stringify(['default', [], [], 'fp32', null])]);
  const out = await generate(reloaded.sd, { prompts: ['a blue heart'], steps: 1, seed: 2 });
  expect(out.images).toHaveLength(1);
  reloaded.release();
  await cache.clear();
  expect(cache.loaded()).toEqual([]);
});

it('names an unknown model, LoRA or embedding before loading anything', async () => {
  const cache = new PipelineCache(registry(), 1);
  await expect(cache.acquire({ model: 'nope' })).rejects.toThrow(/no model named "nope" \(known: default, tiny-sd\)/);
  await expect(cache.acquire({ model: 'default', loras: [{ name: 'x', weight: 1 }] })).rejects.toThrow(/no LoRA named "x"/);
  expect(cache.loaded()).toEqual([]);
});
