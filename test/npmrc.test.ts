// The project's npm settings: every npm command reads .npmrc, so an option npm does not know
// (the old "onnxruntime-node-install=skip") printed a warning on every `npx nuri`. The
// CUDA download is skipped with npm's own ignore-scripts instead.

import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');

describe('.npmrc', () => {
  it('holds only options npm knows, and turns dependency install scripts off', () => {
    const r = spawnSync('npm', ['config', 'get', 'ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.stderr).not.toMatch(/Unknown (project|user|global) config/);
    expect(r.stdout.trim()).toBe('true');
  });
});
