// registerStudio: the built page at `/` with its assets, or a page that says how to build it.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { registerStudio } from '../../src/server/studio.ts';

const dir = mkdtempSync(join(tmpdir(), 'nuri-studio-static-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('registerStudio', () => {
  it('serves the build: index.html never cached, hashed assets for good', async () => {
    const root = join(dir, 'built');
    mkdirSync(join(root, 'assets'), { recursive: true });
    writeFileSync(join(root, 'index.html'), '<!doctype html><title>Nuri Studio</title>');
    writeFileSync(join(root, 'assets/index-abc123.js'), 'console.log(1)');
    const app = Fastify();
    await registerStudio(app, root);
    const page = await app.inject({ method: 'GET', url: '/' });
    expect([page.statusCode, page.headers['cache-control'], page.body]).toEqual([200, 'no-cache', '<!doctype html><title>Nuri Studio</title>']);
    const asset = await app.inject({ method: 'GET', url: '/assets/index-abc123.js' });
    expect([asset.statusCode, asset.headers['cache-control']]).toEqual([200, 'public, max-age=31536000, immutable']);
    expect((await app.inject({ method: 'GET', url: '/assets/missing.js' })).statusCode).toBe(404);
    await app.close();
  });

  it('says how to build the page when there is no build', async () => {
    const app = Fastify();
    await registerStudio(app, join(dir, 'never-built'));
    const page = await app.inject({ method: 'GET', url: '/' });
    expect(page.statusCode).toBe(503);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.body).toContain('npm run build:web');
    await app.close();
  });
});
