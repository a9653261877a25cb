// Nuri Studio on a server started with an API token: the page asks for the token, trades it for
// the session cookie, and then works as without one — its <img> and EventSource carry the cookie.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type RunningServer, ensureStudioBuilt, launchChromium, startNuriServe } from './harness.ts';

let dir: string;
let server: RunningServer;
let browser: Browser;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nuri-studio-token-'));
  await ensureStudioBuilt();
  [server, browser] = await Promise.all([
    startNuriServe(['--outputs', join(dir, 'outputs'), '--token', 'studio-s3cret'], { NURI_CACHE: process.env.NURI_CACHE ?? join(dir, 'cache') }),
    launchChromium(),
  ]);
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  // The server's low-priority graph builder may still be writing into dir/cache: retry while it does.
  if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
});

it('asks for the token, refuses a wrong one beside its field, then generates with the cookie', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(server.url);
  const form = page.getByRole('form', { name: 'Sign in' });
  await form.getByLabel('API token').fill('wrong');
  await form.getByRole('button', { name: 'Sign in' }).click();
  await expect.poll(() => form.locator('[data-field-error]').textContent(), { timeout: 10_000 }).toContain('wrong API token');

  await form.getByLabel('API token').fill('studio-s3cret');
  await Promise.all([page.waitForEvent('load'), form.getByRole('button', { name: 'Sign in' }).click()]);
  await expect.poll(() => page.getByRole('form', { name: 'Sign in' }).count(), { timeout: 10_000 }).toBe(0);

  const gen = page.getByRole('region', { name: 'Generate' });
  await gen.getByLabel('Prompt', { exact: true }).fill('red apple');
  await gen.getByLabel('Steps').fill('3');
  await gen.getByLabel('Prompt', { exact: true }).press('Enter');
  const status = () => gen.locator('.progress').getAttribute('data-status');
  await expect.poll(status, { timeout: 60_000, interval: 50 }).toBe('completed');
  // The result's picture loaded through the cookie (an <img> cannot send an Authorization header).
  const picture = gen.locator('.card img').first();
  await expect.poll(() => picture.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth), { timeout: 10_000 }).toBeGreaterThan(0);
});
