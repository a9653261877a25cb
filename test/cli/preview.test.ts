// `nuri generate --vae DIR --preview FILE --preview-every N`: the picture by TAESD, the preview file
// written as sampling goes (the last one is the finished picture's preview), flags checked up front.

import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runNuri } from '../support/cli.ts';
import { readImage } from '../../src/io/image.ts';
import { parseParameters } from '../../src/io/parameters.ts';
import { readPngText } from '../../src/io/png.ts';
import { checkVaeFlags } from '../../src/cli/preview.ts';
import { FIXTURES, TINY_SD } from '../fixtures.ts';
import { maxAbsDiff } from '../schedulers/reference.ts';

const TINY_TAESD = join(FIXTURES, 'tiny-taesd');

const nuri = (args: string[], cwd: string) => runNuri(args, { cwd });

describe('nuri generate --vae --preview', () => {
  it('writes the picture with TAESD and the preview PNG atomically as it goes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-preview-'));
    const r = await nuri(['generate', 'a cat', '--model', TINY_SD, '--vae', TINY_TAESD, '--steps', '3', '--width', '64', '--height', '64', '--seed', '2', '--preview', 'p.png', '--preview-every', '2', '--out', 'cat.png'], dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(parseParameters(readPngText(join(dir, 'cat.png')).parameters).extra).toMatchObject({ VAE: 'tiny-taesd' });
    // Steps 2 and 3 (the last) rewrote the preview; with TAESD making the picture too, the last
    // preview decodes the final x̂0, which DDIM's last step returns as the picture's latents.
    const [picture, preview] = await Promise.all([readImage(join(dir, 'cat.png')), readImage(join(dir, 'p.png'))]);
    expect([preview.width, preview.height]).toEqual([64, 64]);
    expect(maxAbsDiff(preview.data, picture.data)).toBeLessThanOrEqual(1 / 255 + 1e-6);
    expect(readdirSync(dir).sort()).toEqual(['cat.png', 'p.png']); // no temporary file left
  });

  it('refuses --preview-every without --preview before loading anything', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-preview-bad-'));
    const r = await nuri(['generate', 'a cat', '--model', TINY_SD, '--steps', '1', '--out', 'x.png', '--preview-every', '2'], dir);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--preview-every needs --preview FILE/);
    expect(existsSync(join(dir, 'x.png'))).toBe(false);
  });

  it('checks --vae, --preview-vae and --preview', () => {
    expect(() => checkVaeFlags({ vae: 'no-such-vae' })).toThrow('--vae: no such file or folder no-such-vae');
    expect(() => checkVaeFlags({ previewVae: 'no-such-vae' })).toThrow('--preview-vae: no such folder no-such-vae');
    expect(() => checkVaeFlags({ vae: TINY_TAESD, previewVae: TINY_TAESD })).toThrow(/cannot be combined/);
    expect(() => checkVaeFlags({ preview: 'p.jpg' })).toThrow('--preview must name a .png file');
    expect(checkVaeFlags({ preview: join(tmpdir(), 'p.png') })).toBe(join(tmpdir(), 'p.png'));
  });
});
