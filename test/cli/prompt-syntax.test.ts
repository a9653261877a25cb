// `--no-prompt-syntax` end to end on the tiny fixture model: the PNG says the syntax was off, since
// AUTOMATIC1111 would read the same prompt with it.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runNuri } from '../support/cli.ts';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { parseParameters } from '../../src/io/parameters.ts';
import { readPngText } from '../../src/io/png.ts';
import { TINY_SD } from '../fixtures.ts';

const SMALL = ['--model', TINY_SD, '--steps', '2', '--width', '64', '--height', '64', '--seed', '3'];

async function generate(dir: string, name: string, extra: string[]) {
  const r = await runNuri(['generate', ...SMALL, 'a (cat:1.5) on a [mat]', '--out', `${name}.png`, '--save-latents', `${name}.safetensors`, ...extra], { cwd: dir });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return { latents: readSafetensors(join(dir, `${name}.safetensors`)).get('latents')!.data as Float32Array, params: parseParameters(readPngText(join(dir, `${name}.png`)).parameters) };
}

describe('nuri generate --no-prompt-syntax', () => {
  // That the literal reading conditions differently is the library's test (prompt-embeddings.test.ts).
  it('runs with the brackets read as text and records that in the PNG', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-syntax-'));
    const literal = await generate(dir, 'l', ['--no-prompt-syntax']);
    expect(literal.latents.every(Number.isFinite)).toBe(true);
    expect(literal.params.prompt).toBe('a (cat:1.5) on a [mat]');
    expect(literal.params.extra).toMatchObject({ 'Prompt syntax': 'off' });
  });
});
