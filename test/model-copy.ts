// A private copy of the tiny-sd fixture that a test may break (a config field, a vocabulary id).
// Weights are hard links to the fixture's (fast, no space) unless `copyWeights`: a test that
// rewrites a weights file must ask for copies, or it would change the shared fixture.
import { copyFileSync, cpSync, linkSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES, TINY_SD } from './fixtures.ts';

export function copyTinySd(options: { copyWeights?: boolean } = {}): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'nuri-model-')), 'tiny-sd');
  cpSync(TINY_SD, dir, {
    recursive: true,
    filter: (source, destination) => {
      if (!source.endsWith('.safetensors')) return true;
      try {
        if (options.copyWeights) copyFileSync(source, destination);
        else linkSync(source, destination);
      } catch {
        copyFileSync(source, destination);
      }
      return false;
    },
  });
  return dir;
}

/** tiny-sd with the 9-channel tiny-sd-inpaint UNet: the inpainting pipeline the fixtures' case j ran. */
export function tinyInpaintModel(): string {
  const model = copyTinySd();
  rmSync(join(model, 'unet'), { recursive: true });
  cpSync(join(FIXTURES, 'tiny-sd-inpaint', 'unet'), join(model, 'unet'), {
    recursive: true,
    filter: (source, destination) => (source.endsWith('.safetensors') ? (linkSync(source, destination), false) : true),
  });
  return model;
}

/** Rewrites a JSON file of the copy: `change` edits the parsed object in place. */
export function editJson(model: string, file: string, change: (json: Record<string, unknown>) => void): string {
  const path = join(model, file);
  const json = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  change(json);
  writeFileSync(path, JSON.stringify(json));
  return path;
}
