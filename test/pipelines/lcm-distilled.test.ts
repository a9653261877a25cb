// Sampling an LCM-distilled model (UNet config time_cond_proj_dim, as LCM-Dreamshaper-v7): its own
// LCMScheduler by default, one UNet batch per step — no unconditional half — with the guidance
// scale going in as timestep_cond (w = guidance − 1), from the library and from `nuri generate`.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Generator } from '../../src/engine/index.ts';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { parseParameters } from '../../src/io/parameters.ts';
import { readPngText } from '../../src/io/png.ts';
import { guidanceScaleEmbedding } from '../../src/models/guidance-embedding.ts';
import { crossAttentionMaps } from '../../src/pipelines/attention-maps.ts';
import { edit } from '../../src/pipelines/edit.ts';
import { generate } from '../../src/pipelines/generate.ts';
import { type Feeds, StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { runNuri } from '../support/cli.ts';
import { COND_WIDTH, TIME_CHANNELS, writeLcmDistilled } from '../support/lcm-distilled.ts';

const model = writeLcmDistilled(new Generator(3).randn(TIME_CHANNELS * COND_WIDTH).map((v) => 0.5 * v));
const cliDir = mkdtempSync(join(tmpdir(), 'nuri-lcm-cli-'));
afterAll(() => [dirname(model), cliDir].forEach((dir) => rmSync(dir, { recursive: true, force: true })));
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('an LCM-distilled model', () => {
  const sd = StableDiffusion.load(model);
  const calls: { rows: number; contextValues: number; feeds: Feeds }[] = [];
  const predict = sd.predictNoise.bind(sd);
  sd.predictNoise = (graph, latents, shape, timestep, context, feeds = {}) => {
    calls.push({ rows: shape[0], contextValues: context.length, feeds });
    return predict(graph, latents, shape, timestep, context, feeds);
  };
  const run = (guidance: number) => generate(sd, { prompts: ['a red apple'], negativePrompt: 'blurry', steps: 4, guidance, seed: 1, width: 64, height: 64 });

  it('runs its own LCM sampler with one UNet batch per step, the guidance going in as timestep_cond', async () => {
    expect(sd.embedsGuidance).toBe(true);
    expect(sd.classifierFree(8)).toBe(false);
    calls.length = 0;
    const result = await run(8);
    expect(result.scheduler).toBe('lcm');
    expect(result.warnings).toEqual([expect.stringMatching(/^the negative prompt was not used: .* is LCM-distilled/)]);
    expect(calls).toHaveLength(4);
    for (const call of calls) {
      expect(call.rows).toBe(1); // no unconditional half, whatever the guidance
      expect(call.contextValues).toBe(77 * 32);
      expect(call.feeds.timestep_cond.shape).toEqual([1, COND_WIDTH]);
      expect([...call.feeds.timestep_cond.data]).toEqual([...guidanceScaleEmbedding(7, COND_WIDTH)]);
    }
    // The scale reaches the UNet: another scale, other latents; the same scale, the same latents.
    calls.length = 0;
    expect(maxDiff((await run(2)).latents, result.latents)).toBeGreaterThan(1e-3);
    expect(calls.every((call) => call.rows === 1)).toBe(true);
    expect(maxDiff((await run(8)).latents, result.latents)).toBe(0);
  });

  it("draws with diffusers' LCM defaults when the run names no steps or guidance: 4 steps at 8.5", async () => {
    calls.length = 0;
    const defaults = await generate(sd, { prompts: ['a red apple'], seed: 1, width: 64, height: 64 });
    expect(calls).toHaveLength(4);
    expect([...calls[0].feeds.timestep_cond.data]).toEqual([...guidanceScaleEmbedding(7.5, COND_WIDTH)]);
    expect(maxDiff(defaults.latents, (await generate(sd, { prompts: ['a red apple'], steps: 4, guidance: 8.5, seed: 1, width: 64, height: 64 })).latents)).toBe(0);
  });

  it('maps attention and edits with the same defaults', async () => {
    calls.length = 0;
    await crossAttentionMaps(sd, { prompt: 'a red apple', seed: 1, width: 64, height: 64 });
    expect(calls).toHaveLength(4);
    expect([...calls[0].feeds.timestep_cond.data]).toEqual([...guidanceScaleEmbedding(7.5, COND_WIDTH)]);
    calls.length = 0;
    await edit(sd, { source: 'a red apple', target: 'a green apple', seed: 1, width: 64, height: 64 });
    expect(calls).toHaveLength(4);
    expect(calls[0].feeds.timestep_cond.shape).toEqual([2, COND_WIDTH]); // source and edit, one batch
  });

  it('draws attention maps with one UNet batch per step', async () => {
    calls.length = 0;
    const maps = await crossAttentionMaps(sd, { prompt: 'a red apple', scheduler: 'lcm', steps: 2, guidance: 8, width: 64, height: 64 });
    expect(calls).toHaveLength(2);
    expect(calls.every((call) => call.rows === 1 && call.feeds.timestep_cond?.shape[0] === 1)).toBe(true);
    expect(maps.tokens.map((t) => t.token)).toEqual(['a', 'red', 'apple']);
    expect(maps.tokens.every((t) => t.map.some((v) => v > 0))).toBe(true);
    await sd.releaseUNet();
  });

  it('nuri generate --model <folder> --steps 4 makes the same picture', async () => {
    const dir = cliDir;
    const cli = await runNuri(['generate', 'a red apple', '--model', model, '--negative-prompt', 'blurry', '--steps', '4', '--guidance', '8', '--seed', '1', '--width', '64', '--height', '64', '--out', 'apple.png', '--save-latents', 'z.safetensors'], { cwd: dir });
    expect(cli.stderr.trim()).toMatch(/^warning: the negative prompt was not used: .* is LCM-distilled[^\n]*$/);
    expect(cli.code).toBe(0);
    expect(existsSync(join(dir, 'apple.png'))).toBe(true);
    expect(parseParameters(readPngText(join(dir, 'apple.png')).parameters)).toMatchObject({ steps: 4, sampler: 'LCM', guidance: 8, seed: 1 });
    const library = await run(8);
    expect(maxDiff(readSafetensors(join(dir, 'z.safetensors')).get('latents')!.data as Float32Array, library.latents)).toBeLessThan(1e-5);
  });

  it('nuri generate without --steps or --guidance records the LCM defaults it drew with', async () => {
    const cli = await runNuri(['generate', 'a red apple', '--model', model, '--seed', '1', '--width', '64', '--height', '64', '--out', 'plain.png'], { cwd: cliDir });
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);
    expect(parseParameters(readPngText(join(cliDir, 'plain.png')).parameters)).toMatchObject({ steps: 4, sampler: 'LCM', guidance: 8.5 });
  });
});
