// What a new user ran into on generate, edit and attention: long prompts (a file or stdin instead
// of a command line that crashes ONNX Runtime), --eta recorded and refused where it means nothing,
// no seed recorded when --latents made the noise, Ctrl-C exiting 130, and edit/attention taking
// generate's model options (--config, --tokenizer, --lora, --embedding, --clip-skip) and --device.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, runNuri } from '../support/cli.ts';
import { describe, expect, it } from 'vitest';
import { Generator, writeSafetensors } from '../../src/engine/index.ts';
import { executionProviders } from '../../src/engine/providers.ts';
import { parseParameters } from '../../src/io/parameters.ts';
import { readPngText } from '../../src/io/png.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { LoraNetwork } from '../../src/models/lora.ts';
import { writeEmbeddingFile } from '../../src/models/textual-inversion.ts';
import { FIXTURES, TINY_SD } from '../fixtures.ts';

const SMALL = ['--model', TINY_SD, '--steps', '2', '--width', '64', '--height', '64'];

const nuri = (args: string[], cwd: string, input?: string) => runNuri(args, { cwd, input, timeout: 180_000 });

const temp = () => mkdtempSync(join(tmpdir(), 'nuri-cli-user-'));
const parameters = (png: string) => parseParameters(readPngText(png).parameters);
const longPrompt = Array.from({ length: 5000 }, (_, i) => ['red', 'apple', 'on', 'a', 'table'][i % 5]).join(' ');

describe('long prompts', () => {
  it('a 5,000-word prompt on the command line is refused in one line, pointing to --prompt-file', async () => {
    const dir = temp();
    const r = await nuri(['generate', longPrompt, ...SMALL, '--out', 'x.png'], dir);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/command line is [\d,]+ bytes.*--prompt-file FILE/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('generate reads it from --prompt-file, and attention from stdin (--prompt-file -)', async () => {
    const dir = temp();
    writeFileSync(join(dir, 'prompt.txt'), `${longPrompt}\n`);
    const g = await nuri(['generate', '--prompt-file', 'prompt.txt', ...SMALL, '--seed', '1', '--out', 'long.png'], dir);
    expect(g.code).toBe(0);
    expect(g.stderr).toBe(''); // read whole, in 77-token chunks (A1111's long prompts), nothing dropped
    expect(parameters(join(dir, 'long.png')).prompt).toBe(longPrompt);

    const a = await nuri(['attention', '--prompt-file', '-', '--steps', '2', '--seed', '1', '--out', 'maps.png'], dir, 'large red circle\n');
    expect(a.stderr).toBe('');
    expect(a.code).toBe(0);
    expect(parameters(join(dir, 'maps.png')).prompt).toBe('large red circle');
  });

  it('refuses a prompt given twice, or an empty prompt file', async () => {
    const dir = temp();
    writeFileSync(join(dir, 'empty.txt'), '\n');
    expect((await nuri(['generate', 'a cat', '--prompt-file', 'empty.txt', ...SMALL], dir)).stderr).toMatch(/give the prompt once: an argument and --prompt-file/);
    expect((await nuri(['edit', '--prompt-file', 'empty.txt', '--out', 'e.png'], dir)).stderr).toMatch(/--prompt-file empty\.txt is empty/);
  });
});

describe('--eta and --latents in the PNG parameters', () => {
  it('records Eta for DDIM and refuses --eta with a sampler that has none', async () => {
    const dir = temp();
    const r = await nuri(['generate', 'a cat', ...SMALL, '--scheduler', 'ddim', '--eta', '0.5', '--seed', '2', '--out', 'eta.png'], dir);
    expect(r.code).toBe(0);
    expect(parameters(join(dir, 'eta.png'))).toMatchObject({ seed: 2, sampler: 'DDIM', extra: { Eta: '0.5' } });
    const refused = await nuri(['generate', 'a cat', ...SMALL, '--scheduler', 'euler', '--eta', '0.5', '--out', 'no.png'], dir);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toBe("nuri: --eta is DDIM's η; the euler sampler has none (use --scheduler ddim, or drop --eta)");
    expect(existsSync(join(dir, 'no.png'))).toBe(false);
  });

  it('records no seed when --latents gave the noise', async () => {
    const dir = temp();
    writeSafetensors(join(dir, 'z.safetensors'), { latents: { dtype: 'F32', shape: [1, 4, 8, 8], data: new Generator(1).randn(256) } });
    const r = await nuri(['generate', 'a cat', ...SMALL, '--latents', 'z.safetensors', '--seed', '9', '--out', 'z.png'], dir);
    expect(r.code).toBe(0);
    const p = parameters(join(dir, 'z.png'));
    expect(p.seed).toBeUndefined();
    expect(readPngText(join(dir, 'z.png')).parameters).not.toMatch(/Seed/);
    expect(p.steps).toBe(2);
  });
});

describe('Ctrl-C', () => {
  it('stops generate between steps and exits 130, writing nothing', async () => {
    const dir = temp();
    const cache = join(dir, 'cache'); // a fresh graph cache: files in it mean the command is running
    const child = spawn(process.execPath, [BIN, 'generate', 'a cat', ...SMALL, '--steps', '999', '--out', 'x.png'], { cwd: dir, env: { ...process.env, NURI_CACHE: cache } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
    while (!existsSync(cache) || readdirSync(cache).length === 0) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 500));
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/interrupted: sampling was aborted/);
    expect(existsSync(join(dir, 'x.png'))).toBe(false);
  });
});

describe("edit and attention take generate's model options", () => {
  it('attention: a single file with --config and --tokenizer, an --embedding and --clip-skip, on --device cpu', async () => {
    const dir = temp();
    // The tiny text encoder's width (32) implies no head count: the YAML names it.
    writeFileSync(join(dir, 'tiny.yaml'), `${readFileSync(join(FIXTURES, 'tiny-sd-single.yaml'), 'utf8').trimEnd()}\n      params:\n        num_heads: 4\n`);
    writeEmbeddingFile(join(dir, 'sq.safetensors'), { token: '<sq>', vectors: [new Generator(3).randn(32)] });
    const r = await nuri(['attention', '--model', join(FIXTURES, 'tiny-sd-single.safetensors'), '--config', 'tiny.yaml', '--tokenizer', join(TINY_SD, 'tokenizer'), '--embedding', 'sq.safetensors', '--clip-skip', '2', '--device', 'cpu', '--prompt', 'a <sq> cat', '--steps', '2', '--width', '64', '--height', '64', '--out', 'maps.png'], dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(parameters(join(dir, 'maps.png'))).toMatchObject({ prompt: 'a <sq> cat', extra: { 'Clip skip': '2', TI: '<sq>' } });
  });

  it('edit: a --lora merged at a weight, recorded in the parameters', async () => {
    const dir = temp();
    const rng = new Generator(4);
    const network = LoraNetwork.create(loadStableDiffusion(TINY_SD), { rank: 2 }, rng);
    for (const p of network.parameters()) p.setValue(rng.randn(p.size).map((v) => v * 0.1));
    network.save(join(dir, 'style.safetensors'));
    const r = await nuri(['edit', ...SMALL, '--prompt', 'a cat', '--target', 'a dog', '--lora', 'style.safetensors:0.5', '--clip-skip', '1', '--seed', '3', '--out', 'edit.png'], dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(parameters(join(dir, 'edit.png'))).toMatchObject({ prompt: 'a cat', seed: 3, extra: { Lora: 'style:0.5', 'Clip skip': '1', 'P2P target': 'a dog' } });
  });

  const cuda = executionProviders().find((p) => p.name === 'cuda');
  it.skipIf(cuda?.available)('--device cuda without the CUDA libraries is refused in one line, before any work', async () => {
    const dir = temp();
    const r = await nuri(['edit', '--prompt', 'a cat', '--target', 'a dog', '--device', 'cuda', '--out', 'x.png'], dir);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/execution provider "cuda" is (not installed|not in this onnxruntime-node build)/);
    expect(readdirSync(dir)).toEqual([]);
  });
});
