// Few steps from the command line: the LCM-LoRA recipe (--lora, --scheduler lcm, 4 steps, guidance
// 1), a stochastic run reproduced exactly from a --latents file holding its step_noise, a model's
// own trailing Euler config, and the refusals (a step_noise of the wrong shape or too few steps,
// --timestep-spacing with lcm) in one line before anything is written.

import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensors } from '../../src/engine/safetensors.ts';
import { parseParameters } from '../../src/io/parameters.ts';
import { readPngText } from '../../src/io/png.ts';
import { BatchGenerator } from '../../src/pipelines/generate.ts';
import { TINY_SD } from '../fixtures.ts';
import { copyTinySd, editJson } from '../model-copy.ts';
import { writeLcmStyleLora } from '../support/lcm-lora.ts';

const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'nuri.js');
const SMALL = ['--width', '64', '--height', '64'];
const LATENT_SHAPE = [1, 4, 8, 8];
const LENGTH = 4 * 8 * 8;

/** Runs the CLI without blocking the test worker (a blocked worker misses vitest's own messages on a loaded machine). */
function nuri(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 180_000 }, (error, stdout, stderr) => {
      done({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

const temp = () => mkdtempSync(join(tmpdir(), 'nuri-cli-fewstep-'));
const parameters = (png: string) => parseParameters(readPngText(png).parameters);
const finalLatents = (path: string) => readSafetensors(path).get('latents')!.data as Float32Array;

/** A --latents file: initial latents and, when given, step_noise [S, 1, 4, 8, 8]. */
function latentsFile(dir: string, latents: Float32Array, stepNoise?: Float32Array[], shape = [stepNoise?.length ?? 0, ...LATENT_SHAPE]): string {
  const path = join(dir, 'z.safetensors');
  const noise = stepNoise && { step_noise: { dtype: 'F32' as const, shape, data: Float32Array.from(stepNoise.flatMap((row) => [...row])) } };
  writeSafetensors(path, { latents: { dtype: 'F32', shape: LATENT_SHAPE, data: latents }, ...noise });
  return path;
}

describe('nuri generate with few-step samplers', () => {
  it('runs the LCM-LoRA recipe, and a latents file with its step_noise reproduces the seeded run exactly', async () => {
    const dir = temp();
    const lora = writeLcmStyleLora().path;
    const recipe = ['generate', 'a cat', '--model', TINY_SD, ...SMALL, '--lora', lora, '--scheduler', 'lcm', '--steps', '4', '--guidance', '1'];
    const seeded = await nuri([...recipe, '--seed', '7', '--out', 'a.png', '--save-latents', 'a.safetensors'], dir);
    expect(seeded.stderr).toBe('');
    expect(seeded.code).toBe(0);
    expect(parameters(join(dir, 'a.png'))).toMatchObject({ steps: 4, sampler: 'LCM', guidance: 1, seed: 7, extra: { Lora: expect.stringContaining('lcm') } });

    // What that run drew from seed 7: the initial latents, then LCM's noise after steps 1–3 (none after the last).
    const draws = new BatchGenerator([7]);
    const initial = draws.randn(LENGTH);
    const stepNoise = [draws.randn(LENGTH), draws.randn(LENGTH), draws.randn(LENGTH), new Float32Array(LENGTH)];
    const file = latentsFile(dir, initial, stepNoise);
    // Another seed: only the file's noise can make the same picture.
    const replayed = await nuri([...recipe, '--seed', '99', '--latents', file, '--out', 'b.png', '--save-latents', 'b.safetensors'], dir);
    expect(replayed.stderr).toBe('');
    expect(replayed.code).toBe(0);
    expect(parameters(join(dir, 'b.png')).seed).toBeUndefined();
    const a = finalLatents(join(dir, 'a.safetensors'));
    const b = finalLatents(join(dir, 'b.safetensors'));
    expect(b.reduce((m, v, i) => Math.max(m, Math.abs(v - a[i]!)), 0)).toBeLessThanOrEqual(1e-6);
  });

  it('picks 4 steps and guidance 1 for --scheduler lcm when neither is given (the LCM-LoRA recipe)', async () => {
    const dir = temp();
    const r = await nuri(['generate', 'a cat', '--model', TINY_SD, ...SMALL, '--lora', writeLcmStyleLora().path, '--scheduler', 'lcm', '--seed', '7', '--out', 'a.png'], dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(parameters(join(dir, 'a.png'))).toMatchObject({ steps: 4, sampler: 'LCM', guidance: 1 });
    const plain = await nuri(['generate', 'a cat', '--model', TINY_SD, ...SMALL, '--steps', '2', '--seed', '7', '--out', 'b.png'], dir);
    expect(plain.code).toBe(0);
    expect(parameters(join(dir, 'b.png'))).toMatchObject({ steps: 2, guidance: 7.5 });
  });

  it("takes the sampler from the model's scheduler config (SD-Turbo: EulerDiscreteScheduler, trailing) and records --timestep-spacing", async () => {
    const dir = temp();
    const turbo = copyTinySd();
    editJson(turbo, 'scheduler/scheduler_config.json', (json) => Object.assign(json, { _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'trailing' }));
    const r = await nuri(['generate', 'a cat', '--model', turbo, ...SMALL, '--steps', '1', '--guidance', '0', '--timestep-spacing', 'trailing', '--seed', '1', '--out', 't.png'], dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(parameters(join(dir, 't.png'))).toMatchObject({ steps: 1, sampler: 'Euler', extra: { 'Timestep spacing': 'trailing' } });
  });

  const latents = new Float32Array(LENGTH).fill(0.5);
  const rows = (n: number) => Array.from({ length: n }, () => new Float32Array(LENGTH));
  const refusals: [string, (dir: string) => string[], RegExp | string][] = [
    [
      'a step_noise whose rows are not the latents’ shape',
      (dir) => ['--scheduler', 'euler-a', '--steps', '2', '--latents', latentsFile(dir, latents, rows(2).map((r) => r.subarray(0, LENGTH / 2)), [2, 1, 4, 8, 4])],
      /--latents .*z\.safetensors: tensor "step_noise" must be fp32 \[S, 1, 4, 8, 8\] \(one row of noise per sampler step, the shape of "latents"\), found F32 \[2, 1, 4, 8, 4\]/,
    ],
    [
      'a step_noise with fewer steps than the run',
      (dir) => ['--scheduler', 'lcm', '--steps', '4', '--guidance', '1', '--latents', latentsFile(dir, latents, rows(2))],
      /--latents .*z\.safetensors: tensor "step_noise" holds the noise of 2 sampler steps; this run \(lcm\) takes 4/,
    ],
    ['--timestep-spacing with lcm', () => ['--scheduler', 'lcm', '--timestep-spacing', 'trailing'], '--timestep-spacing does not apply to lcm'],
  ];
  it.each(refusals)('refuses %s in one line, writing nothing', async (_, args, message) => {
    const dir = temp();
    const extra = args(dir);
    const before = readdirSync(dir);
    const r = await nuri(['generate', 'x', '--model', TINY_SD, ...SMALL, '--out', 'x.png', ...extra], dir);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    expect(readdirSync(dir)).toEqual(before);
  });
});
