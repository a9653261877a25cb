// The project's npm settings: every npm command reads .npmrc, so an option npm does not know
// (the old "onnxruntime-node-install=skip") printed a warning on every `npx nuri`. The CUDA
// download is skipped by denying onnxruntime-node's install script in package.json's
// allowScripts; ignore-scripts would also skip the project's own prepare (the Studio build).

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');

describe('npm settings', () => {
  it('.npmrc holds only options npm knows and leaves the project\'s own scripts on', () => {
    const r = spawnSync('npm', ['config', 'get', 'ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.stderr).not.toMatch(/Unknown (project|user|global) config/);
    expect(r.stdout.trim()).toBe('false');
  });

  it("denies onnxruntime-node's install script (it downloads CUDA from outside the npm registry) and builds the Studio at install", () => {
    const pkg = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8'));
    expect(pkg.allowScripts['onnxruntime-node']).toBe(false);
    expect(pkg.scripts.prepare).toMatch(/build-web/);
  });
});
