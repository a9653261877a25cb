// `nuri generate --init-image --mask` end to end: a diffusers inpainting run reproduced from a
// --latents file that also holds the posterior noise (case j, 9-channel UNet at strength 0.75,
// where diffusers starts from the given latents), --only-masked, and a bad --outpaint refused in one
// line before any work (outpainting itself: test/pipelines/inpaint.test.ts).

import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runNuri } from '../support/cli.ts';
import { readSafetensors, writeSafetensors } from '../../src/engine/safetensors.ts';
import { parseParameters } from '../../src/io/parameters.ts';
import { readPngText } from '../../src/io/png.ts';
import { readImage } from '../../src/io/image.ts';
import { tinyInpaintModel } from '../model-copy.ts';
import { FIXTURES, TINY_SD, referenceCase } from '../fixtures.ts';

const IMAGE = join(FIXTURES, 'reference-2', 'inpaint_image_128.png');
const RECT = join(FIXTURES, 'reference-2', 'inpaint_mask_rect_128.png');

function nuri(args: string[], cwd: string) {
  return runNuri(['generate', 'a red bench in a park', ...args], { cwd });
}

describe('nuri generate: inpainting and outpainting', () => {
  it('reproduces diffusers from --latents with masked_image_noise (9-channel UNet, strength 0.75)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-inpaint-'));
    const ref = readSafetensors(referenceCase('pipeline_inpaint9_ddim_s0.75').file);
    const tensor = (name: string) => ({ dtype: 'F32' as const, shape: ref.get(name)!.shape, data: ref.get(name)!.data as Float32Array });
    writeSafetensors(join(dir, 'z.safetensors'), { latents: tensor('initial_latents'), masked_image_noise: tensor('masked_image_posterior_noise') });
    const args = ['--model', tinyInpaintModel(), '--init-image', IMAGE, '--mask', RECT, '--mask-blur', '0', '--strength', '0.75', '--steps', '10', '--latents', 'z.safetensors', '--save-latents', 'out.safetensors', '--out', 'x.png'];
    const r = await nuri(args, dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const ours = readSafetensors(join(dir, 'out.safetensors')).get('latents')!.data as Float32Array;
    const theirs = ref.get('latents_out')!.data as Float32Array;
    expect(Math.max(...ours.map((v, i) => Math.abs(v - theirs[i])))).toBeLessThan(5e-4);
    expect(parseParameters(readPngText(join(dir, 'x.png')).parameters)).toMatchObject({ width: 128, height: 128, denoisingStrength: 0.75 });
  });

  it('--only-masked draws around the mask at --width × --height and writes the picture at its own size', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-inpaint-'));
    const r = await nuri(['--model', TINY_SD, '--init-image', IMAGE, '--mask', RECT, '--only-masked', '--only-masked-padding', '8', '--width', '64', '--height', '64', '--steps', '2', '--seed', '1', '--out', 'x.png'], dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const written = await readImage(join(dir, 'x.png'));
    expect([written.width, written.height]).toEqual([128, 128]);
    expect(parseParameters(readPngText(join(dir, 'x.png')).parameters)).toMatchObject({ width: 64, height: 64, extra: { 'Inpaint area': 'Only masked', 'Masked area padding': '8' } });
  });

  // (parseOutpaint's other refusals are unit-tested in test/pipelines/masks.test.ts)
  const refused: [string, string[], RegExp][] = [
    ['an outpaint side that is not a multiple of 8', ['--init-image', IMAGE, '--outpaint', 'left=100'], /--outpaint.*left=100 is not a multiple of 8/],
    ['--only-masked without --mask', ['--init-image', IMAGE, '--only-masked'], /--only-masked needs --mask/],
    ['--only-masked with --controlnet', ['--init-image', IMAGE, '--mask', RECT, '--only-masked', '--controlnet', `${join(FIXTURES, 'tiny-controlnet')}:${IMAGE}`], /--only-masked and --controlnet cannot be combined yet/],
  ];
  for (const [what, args, message] of refused) {
    it(`refuses ${what} in one line`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'nuri-inpaint-'));
      const r = await nuri(['--model', TINY_SD, '--steps', '2', '--out', 'x.png', ...args], dir);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(existsSync(join(dir, 'x.png'))).toBe(false);
    });
  }
});
