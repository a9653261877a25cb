// `nuri generate` end to end: a PNG with A1111 parameters and latents out; bad arguments give one
// line on stderr, a non-zero exit and no output file.

import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runNuri } from '../support/cli.ts';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { parseParameters } from '../../src/io/parameters.ts';
import { readPngText } from '../../src/io/png.ts';
import { TINY_SD } from '../fixtures.ts';


const nuri = (args: string[], cwd: string) => runNuri(args, { cwd });

describe('nuri generate', () => {
  it('writes a PNG with its parameters and the final latents', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-cli-'));
    const r = await nuri(['generate', 'a photo of a cat', '--model', TINY_SD, '--steps', '3', '--width', '64', '--height', '64', '--seed', '5', '--scheduler', 'euler-a', '--out', 'cat.png', '--save-latents', 'z.safetensors'], dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const params = parseParameters(readPngText(join(dir, 'cat.png')).parameters);
    expect(params).toMatchObject({ prompt: 'a photo of a cat', steps: 3, sampler: 'Euler a', seed: 5, width: 64, height: 64, guidance: 7.5, model: 'tiny-sd' });
    const latents = readSafetensors(join(dir, 'z.safetensors')).get('latents')!;
    expect(latents.dtype).toBe('F32');
    expect(latents.shape).toEqual([1, 4, 8, 8]);
  });

  const bad: [string, string[], RegExp][] = [
    ['a non-integer step count', ['--steps', 'abc'], /--steps/],
    ['a size that is not a multiple of 8', ['--width', '100'], /multiple of 8/],
    ['an unknown scheduler', ['--scheduler', 'heun'], /expected one of/],
    ['a missing model', ['--model', '/no/such/model'], /model not found/],
    ['a missing output folder', ['--out', 'nowhere/x.png'], /does not exist/],
    ['strength without an init image', ['--strength', '0.5'], /--init-image/],
    ['a missing latents file', ['--latents', 'none.safetensors'], /no such file/],
  ];
  for (const [what, args, message] of bad) {
    it(`refuses ${what} in one line, writing nothing`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'nuri-cli-'));
      const r = await nuri(['generate', 'x', '--model', TINY_SD, '--out', 'x.png', ...args], dir);
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
      expect(readdirSync(dir)).toEqual([]);
      expect(existsSync(join(dir, 'x.png'))).toBe(false);
    });
  }
});
