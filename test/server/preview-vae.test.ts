// Server step previews: built only while someone would see them, by the tiny VAE (--preview-vae)
// at the picture's size for a model it fits, and left out with a warning for one it does not.
import { mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import type { RunnerProgress } from '../../src/server/jobs.ts';
import { ModelRegistry } from '../../src/server/models.ts';
import { PipelineCache } from '../../src/server/pipeline-cache.ts';
import { createRunner } from '../../src/server/runner.ts';
import { jobSchemas, parseJobRequest } from '../../src/server/schemas.ts';
import { FIXTURES, TINY_SD } from '../fixtures.ts';

const TINY_TAESD = join(FIXTURES, 'tiny-taesd');

function registry(): ModelRegistry {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-models-'));
  symlinkSync(TINY_SD, join(dir, 'tiny-sd'));
  return new ModelRegistry(dir);
}

/** Runs one generate job; `watching(step)` says whether anyone listens at that step. */
async function runJob(cache: PipelineCache, params: Record<string, unknown>, watching: (step: number) => boolean) {
  const reports: RunnerProgress[] = [];
  let step = 0;
  const { type, params: parsed } = parseJobRequest({ type: 'generate', params }, jobSchemas());
  const result = await createRunner({ registry: cache.registry, cache })({ id: 'job-1', type, params: parsed }, {
    signal: new AbortController().signal,
    progress: (p) => {
      reports.push(p);
      step = p.step;
    },
    wantsPreview: () => watching(step + 1),
    readInput: () => Promise.reject(new Error('no inputs')),
  });
  return { reports: reports.filter((r) => r.phase === 'sampling'), result };
}

describe('server previews', () => {
  it('are built only while someone listens, by TAESD at the picture\'s size', async () => {
    const cache = new PipelineCache(registry(), 1, TINY_TAESD);
    const { reports } = await runJob(cache, { model: 'tiny-sd', prompt: 'a cat', steps: 3, width: 64, height: 64, seed: 1, guidance: 1 }, (step) => step !== 2);
    expect(reports.map((r) => [r.step, r.preview !== undefined])).toEqual([[1, true], [2, false], [3, true]]);
    const meta = await sharp(reports[0].preview!).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
    await cache.clear();
  });

  it('fall back to the latent map, with a warning, for a model the preview VAE does not fit', async () => {
    const cache = new PipelineCache(registry(), 1, TINY_TAESD);
    const { reports, result } = await runJob(cache, { model: 'default', prompt: 'a red apple', steps: 2, seed: 1 }, () => true);
    const meta = await sharp(reports[0].preview!).metadata();
    expect(meta.width).toBe(16); // the default model's 64-px picture has 16×16 latents
    expect(JSON.stringify(result.info.warnings)).toMatch(/previews without the tiny VAE: .*tiny-taesd: this VAE has 4 latent channels at 1\/8/);
    await cache.clear();
  });

  it('refuses a preview VAE folder that does not exist when the server starts', () => {
    expect(() => new PipelineCache(registry(), 1, '/no/such/taesd')).toThrow('--preview-vae: no such folder /no/such/taesd');
  });
});
