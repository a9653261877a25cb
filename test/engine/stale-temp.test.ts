// A process killed between writing a PNG's temporary file and renaming it leaves
// `.x.png.<pid>.<hex>.tmp` behind: the next PNG written to that folder removes it, when that
// process is gone, and leaves the temporary files of live writers alone.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createImage } from '../../src/io/image.ts';
import { writePng } from '../../src/io/png.ts';
import { processAlive, removeStaleTemps } from '../../src/engine/stale-temp.ts';

const deadPid = () => spawnSync(process.execPath, ['-e', '']).pid!;

describe('stale temporary files', () => {
  it('knows live and dead processes', () => {
    expect(processAlive(process.pid)).toBe(true);
    expect(processAlive(process.ppid)).toBe(true);
    expect(processAlive(deadPid())).toBe(false);
  });

  it("writePng removes a killed writer's temporary PNG, not a live one's", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-stale-'));
    const dead = `.x.png.${deadPid()}.0a1b2c3d.tmp`;
    const live = `.x.png.${process.ppid}.0a1b2c3d.tmp`;
    for (const name of [dead, live]) writeFileSync(join(dir, name), 'half a png');
    await writePng(join(dir, 'y.png'), createImage(4, 4));
    expect(readdirSync(dir).sort()).toEqual([live, 'y.png'].sort());
  });

  it('removes only names that match the pattern', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-stale-'));
    const pid = deadPid();
    for (const name of [`a.${pid}.tmp`, `b.${pid}.keep`]) writeFileSync(join(dir, name), '');
    expect(removeStaleTemps(dir, /^.+\.(\d+)\.tmp$/)).toEqual([`a.${pid}.tmp`]);
    expect(existsSync(join(dir, `b.${pid}.keep`))).toBe(true);
  });
});
