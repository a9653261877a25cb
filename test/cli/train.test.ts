// `nuri train` personalisation commands as a new user meets them: a single-file checkpoint trains
// with generate's fallbacks (tokenizer beside it or bundled; --config), Ctrl-C leaves a checkpoint
// and exits 130, and DreamBooth's help says which learning rate each mode uses.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, runNuri } from '../support/cli.ts';
import { describe, expect, it } from 'vitest';
import { createImage } from '../../src/io/image.ts';
import { writePng } from '../../src/io/png.ts';
import { loadLoraFile } from '../../src/models/lora.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { FIXTURES, TINY_SD } from '../fixtures.ts';

const SINGLE = join(FIXTURES, 'tiny-sd-single.safetensors');

const nuri = (args: string[], cwd: string) => runNuri(args, { cwd, timeout: 300_000 });

describe('nuri train on a single-file checkpoint', () => {
  it('trains a LoRA with the bundled tokenizer and --config, and the file fits the model', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-cli-train-'));
    mkdirSync(join(dir, 'images'));
    for (let i = 0; i < 2; i++) await writePng(join(dir, 'images', `sq-${i}.png`), createImage(64, 64, [0.9, 0.1 * i, 0.2]));
    // The tiny text encoder's width (32) implies no head count: the YAML names it, as the single-file test's does.
    writeFileSync(join(dir, 'tiny.yaml'), `${readFileSync(join(FIXTURES, 'tiny-sd-single.yaml'), 'utf8').trimEnd()}\n      params:\n        num_heads: 4\n`);
    const r = await nuri(['train', 'lora', '--model', SINGLE, '--config', 'tiny.yaml', '--images', 'images', '--rank', '2', '--steps', '1', '--resolution', '64', '--out', 'out'], dir);
    expect(r.stderr).toMatch(/wrote .*pytorch_lora_weights\.safetensors/);
    expect(r.code).toBe(0);
    const read = loadLoraFile(join(dir, 'out', 'pytorch_lora_weights.safetensors'), loadStableDiffusion(TINY_SD));
    expect(read.unmatched).toEqual([]);
    expect(read.layers.length).toBeGreaterThan(0);
  });

  it('refuses a --tokenizer folder that does not exist, in one line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-cli-train-'));
    const r = await nuri(['train', 'lora', '--model', SINGLE, '--tokenizer', 'nope', '--images', 'images', '--out', 'out'], dir);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('nuri: --tokenizer: no such folder nope');
  });
});

describe('nuri train --lr-cycles', () => {
  it('refuses a list that is not step counts, or that does not add up to --steps, in one line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-cli-train-'));
    mkdirSync(join(dir, 'images'));
    await writePng(join(dir, 'images', 'sq.png'), createImage(64, 64, [0.9, 0.1, 0.2]));
    const args = ['train', 'lora', '--model', TINY_SD, '--images', 'images', '--rank', '2', '--resolution', '64', '--lr-schedule', 'cosine', '--out', 'out'];
    const bad = await nuri([...args, '--steps', '10', '--lr-cycles', '6,x'], dir);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toMatch(/^error: option '--lr-cycles <n,n,...>' argument '6,x' is invalid\. expected positive step counts separated by commas/);
    const short = await nuri([...args, '--steps', '10', '--lr-cycles', '6,2'], dir);
    expect(short.code).toBe(1);
    expect(short.stderr.trim().split('\n').at(-1)).toBe('nuri: learning-rate cycles 6+2 = 8 steps, but the run has 10');
    expect(existsSync(join(dir, 'out'))).toBe(false);
  });
});

describe('Ctrl-C during nuri train', () => {
  it('saves a checkpoint, says how to resume, and exits 130', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-cli-train-'));
    mkdirSync(join(dir, 'images'));
    for (let i = 0; i < 2; i++) await writePng(join(dir, 'images', `sq-${i}.png`), createImage(64, 64, [0.9, 0.1 * i, 0.2]));
    // 100 steps log a line every 2 (stderr is not a terminal): the first one means training has begun.
    const args = ['train', 'lora', '--model', TINY_SD, '--images', 'images', '--rank', '2', '--steps', '100', '--resolution', '64', '--out', 'out'];
    const child = spawn(process.execPath, [BIN, ...args], { cwd: dir });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
    while (!/^step \d+\/100/m.test(stderr)) await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    const [, step, checkpoint] = /interrupted at step (\d+); checkpoint saved in (\S+)\. Continue with --resume\./.exec(stderr) ?? [];
    expect(checkpoint).toBe(join('out', 'checkpoints', `checkpoint-${step.padStart(6, '0')}`)); // as --out names it
    expect(Number(step)).toBeGreaterThanOrEqual(2);
    expect(existsSync(join(dir, checkpoint, 'trainer.json'))).toBe(true);
    expect(existsSync(join(dir, 'out', 'pytorch_lora_weights.safetensors'))).toBe(false);
  });
});

describe('nuri train dreambooth --help', () => {
  it('names both learning rates: the full fine-tune and the --lora-rank one', async () => {
    const r = await nuri(['train', 'dreambooth', '--help'], tmpdir());
    expect(r.code).toBe(0);
    expect(r.stdout.replace(/\s+/g, ' ')).toMatch(/--lr <lr> peak learning rate \(default 5e-6; 1e-4 with --lora-rank\)/);
  });
});
