// `nuri generate --controlnet PATH:IMAGE[:SCALE]` end to end on tiny-sd + tiny-controlnet, the
// Canny preprocessor, and the flag checks (one line on stderr, nothing written).

import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runNuri } from '../support/cli.ts';
import { parseParameters } from '../../src/io/parameters.ts';
import { readPngText } from '../../src/io/png.ts';
import { type ControlFlags, checkControlFlags, parseControlSpec } from '../../src/cli/control-options.ts';
import { FIXTURES, TINY_SD, referenceCase } from '../fixtures.ts';

const CONTROLNET = join(FIXTURES, 'tiny-controlnet');
const EDGES = join(FIXTURES, referenceCase('controlnet_forward').control_image_png as string);
const PICTURE = join(FIXTURES, 'reference-2', 'inpaint_image_128.png');

const nuri = (args: string[], cwd: string) => runNuri(args, { cwd, env: { ...process.env, NURI_CACHE: process.env.NURI_CACHE ?? join(cwd, 'cache') } });

describe('--controlnet spec', () => {
  it('reads PATH:IMAGE and PATH:IMAGE:SCALE', () => {
    expect(parseControlSpec(`${CONTROLNET}:${EDGES}`)).toEqual({ model: CONTROLNET, image: EDGES, scale: 1 });
    expect(parseControlSpec(`${CONTROLNET}:${EDGES}:0.5`)).toEqual({ model: CONTROLNET, image: EDGES, scale: 0.5 });
    expect(() => parseControlSpec(CONTROLNET)).toThrow(/PATH:IMAGE\[:SCALE\]/);
    expect(() => parseControlSpec(`${CONTROLNET}:${EDGES}:50`)).toThrow(/scale must be a number from 0 to 10/);
  });
});

describe('nuri generate --controlnet', () => {
  it('draws with two ControlNets (one from a Canny edge map of a picture) and records them in the PNG', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-cli-cn-'));
    const r = await nuri(['generate', 'a house by a lake', '--model', TINY_SD, '--steps', '2', '--width', '64', '--height', '64', '--seed', '1',
      '--controlnet', `${CONTROLNET}:${PICTURE}:0.7`, '--controlnet', `${CONTROLNET}:${PICTURE}`, '--control-preprocess', 'canny', '--canny-low', '50',
      '--control-end', '0.5', '--out', 'house.png'], dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const { extra } = parseParameters(readPngText(join(dir, 'house.png')).parameters);
    expect(extra?.['ControlNet 0']).toBe('Module: canny, Model: tiny-controlnet, Weight: 0.7, Resize Mode: Just Resize, Threshold A: 50, Threshold B: 200, Guidance Start: 0, Guidance End: 0.5');
    expect(extra?.['ControlNet 1']).toMatch(/Weight: 1,/);
  });

  it('refuses a bad flag in one line, writing nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-cli-cn-'));
    const r = await nuri(['generate', 'x', '--model', TINY_SD, '--out', 'x.png', '--controlnet', `${CONTROLNET}:/no/such.png`], dir);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/no control image at \/no\/such\.png/);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('checkControlFlags', () => {
  const spec = parseControlSpec(`${CONTROLNET}:${EDGES}`);
  const bad: [string, ControlFlags, RegExp][] = [
    ['a missing ControlNet', { controlnet: [{ ...spec, model: '/no/such/cn' }] }, /no ControlNet at \/no\/such\/cn/],
    ['--control-start without --controlnet', { controlStart: 0.2 }, /--control-start needs --controlnet/],
    ['start not below end', { controlnet: [spec], controlStart: 0.6, controlEnd: 0.4 }, /--control-start \(0\.6\) must be below --control-end \(0\.4\)/],
    ['Canny thresholds without canny', { controlnet: [spec], cannyLow: 10 }, /need --control-preprocess canny/],
    ['Canny thresholds out of order', { controlnet: [spec], controlPreprocess: 'canny', cannyLow: 250 }, /--canny-low \(250\) must not be above --canny-high \(200\)/],
  ];
  it.each(bad)('refuses %s', (_, flags, message) => {
    expect(() => checkControlFlags(flags)).toThrow(message);
  });
  it('accepts a complete set', () => {
    expect(() => checkControlFlags({ controlnet: [spec, spec], controlStart: 0.1, controlEnd: 0.9, controlPreprocess: 'canny', cannyLow: 50 })).not.toThrow();
  });
});
