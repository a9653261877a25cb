// `nuri edit` and `nuri attention` end to end on the tiny fixture model: the side-by-side PNG,
// latents out, the heat-map grid; bad arguments give one line on stderr, a non-zero exit and no
// output file, before any model runs.

import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runNuri } from '../support/cli.ts';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { readImage } from '../../src/io/image.ts';
import { parseParameters } from '../../src/io/parameters.ts';
import { readPngText } from '../../src/io/png.ts';
import { TINY_SD } from '../fixtures.ts';
import { copyTinySd, editJson } from '../model-copy.ts';


const nuri = (args: string[], cwd: string) => runNuri(args, { cwd });

const SMALL = ['--model', TINY_SD, '--steps', '2', '--width', '64', '--height', '64', '--seed', '3'];

describe('nuri edit', () => {
  it('writes source and edit side by side with the edit in the parameters, and latents [2,4,h,w]', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-edit-'));
    const r = await nuri(['edit', ...SMALL, '--prompt', 'a cat riding a bike', '--target', 'a dog riding a bike', '--cross-replace', '0.5', '--cross-replace', 'dog=0.2', '--local-blend', 'cat', '--out', 'e.png', '--save-latents', 'z.safetensors'], dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const grid = await readImage(join(dir, 'e.png'));
    expect(grid.width).toBeGreaterThanOrEqual(2 * 64);
    const params = parseParameters(readPngText(join(dir, 'e.png')).parameters);
    expect(params).toMatchObject({ prompt: 'a cat riding a bike', steps: 2, sampler: 'DDIM', seed: 3 });
    expect(params.extra).toMatchObject({ 'P2P edit': 'replace', 'P2P target': 'a dog riding a bike', 'P2P cross replace': '0.5 dog=0.2', 'P2P local blend': 'cat' });
    const latents = readSafetensors(join(dir, 'z.safetensors')).get('latents')!;
    expect(latents.shape).toEqual([2, 4, 8, 8]);
  });

  it("uses the model's own size and VAE factor: the default model (4×) edits 64-px pictures on 16×16 latents", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-edit-'));
    const r = await nuri(['edit', '--steps', '2', '--seed', '1', '--prompt', 'cat face', '--target', 'dog face', '--out', 'e.png', '--save-latents', 'z.safetensors'], dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(readSafetensors(join(dir, 'z.safetensors')).get('latents')!.shape).toEqual([2, 4, 16, 16]);
    expect(parseParameters(readPngText(join(dir, 'e.png')).parameters)).toMatchObject({ width: 64, height: 64 });
  });

  it("samples with the model's own scheduler unless one is named, as generate does", async () => {
    const model = copyTinySd();
    editJson(model, 'scheduler/scheduler_config.json', (c) => (c._class_name = 'EulerDiscreteScheduler'));
    const dir = mkdtempSync(join(tmpdir(), 'nuri-edit-'));
    const r = await nuri(['edit', ...SMALL, '--model', model, '--prompt', 'a cat riding a bike', '--target', 'a dog riding a bike', '--out', 'e.png'], dir);
    expect(r.stderr).toBe('');
    expect(parseParameters(readPngText(join(dir, 'e.png')).parameters).sampler).toBe('Euler');
    const maps = await nuri(['attention', ...SMALL, '--model', model, '--prompt', 'a cat', '--out', 'm.png'], dir);
    expect(maps.stderr).toBe('');
    expect(parseParameters(readPngText(join(dir, 'm.png')).parameters).sampler).toBe('Euler');
  });

  it("carries a re-weight into the later words with --reweight-carry or the model's nuri.json, and says so in the parameters", async () => {
    const model = copyTinySd();
    writeFileSync(join(model, 'nuri.json'), JSON.stringify({ defaults: { reweightCarry: true } }));
    const dir = mkdtempSync(join(tmpdir(), 'nuri-edit-'));
    const run = async (out: string, ...flags: string[]) => {
      const r = await nuri(['edit', ...SMALL, '--model', model, '--prompt', 'a red cat', '--reweight', 'red=0', ...flags, '--out', out], dir);
      expect(r.stderr).toBe('');
      return parseParameters(readPngText(join(dir, out)).parameters).extra;
    };
    expect(await run('carried.png')).toMatchObject({ 'P2P reweight': 'red=0', 'P2P reweight carry': 'on' });
    expect(await run('plain.png', '--no-reweight-carry')).not.toHaveProperty('P2P reweight carry');
    const [carried, plain] = [await readImage(join(dir, 'carried.png')), await readImage(join(dir, 'plain.png'))];
    expect(carried.data).not.toEqual(plain.data);
  });

  // Each spawn costs seconds; the other word checks are covered in-process (seq-aligner.test.ts).
  const bad: [string, string[], RegExp][] = [
    ['a re-weighted word that is not in the prompt', ['--reweight', 'horse=2'], /reweight: "horse" is not a word/],
    ['a local-blend word in neither prompt', ['--target', 'a dog riding a bike', '--local-blend', 'horse'], /local-blend: "horse"/],
    ['a swap whose token counts differ', ['--target', 'a hippopotamus riding a bike'], /same number of tokens.*refine/],
    ['a fraction outside [0, 1]', ['--self-replace', '1.5'], /--self-replace/],
    ['a missing image', ['--image', 'none.png'], /--image: no such file/],
    ['a picture to edit with a sampler other than DDIM', ['--image', join(TINY_SD, 'model_index.json'), '--scheduler', 'euler'], /--image needs --scheduler ddim.*null-text/],
  ];
  for (const [what, args, message] of bad) {
    it(`refuses ${what} in one line, writing nothing`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'nuri-edit-'));
      const r = await nuri(['edit', ...SMALL, '--prompt', 'a cat riding a bike', '--out', 'x.png', ...args], dir);
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
      expect(readdirSync(dir)).toEqual([]);
      expect(existsSync(join(dir, 'x.png'))).toBe(false);
    });
  }
});

describe('nuri attention', () => {
  it('writes the image and one labelled heat map per token as one grid', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-attention-'));
    const r = await nuri(['attention', '--model', TINY_SD, '--steps', '2', '--width', '64', '--height', '64', '--prompt', 'a cat riding a bike', '--out', 'maps.png'], dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const grid = await readImage(join(dir, 'maps.png'));
    expect(grid.width).toBeGreaterThanOrEqual(6 * 64); // the image and 5 tokens in one row
  });

  it('refuses a size that is not a multiple of 8 in one line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-attention-'));
    const r = await nuri(['attention', '--model', TINY_SD, '--width', '70', '--height', '64', '--prompt', 'a cat', '--out', 'maps.png'], dir);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/multiple of 8/);
    expect(existsSync(join(dir, 'maps.png'))).toBe(false);
  });
});
