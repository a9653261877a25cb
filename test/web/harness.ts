// What the Studio's browser tests start for themselves: a fresh build of the page (when src/web is
// newer than dist/web), a real `nuri serve` on a free port, and headless Chromium from the npm
// registry (@sparticuz/chromium's binary, driven by playwright-core).

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import chromium from '@sparticuz/chromium';
import { type Browser, type Locator, type Page, chromium as playwright } from 'playwright-core';
import { expect } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');
const BUILT = join(ROOT, 'dist/web/index.html');
/** The page's sources, and the shared modules it bundles. */
const SOURCES = ['src/web', 'src/io/parameters.ts', 'src/io/png-text.ts', 'src/schedulers/labels.ts', 'src/tokenizers/words.ts', 'src/pipelines/masks.ts'];

function newestChange(path: string): number {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(stat.mtimeMs, ...readdirSync(path).map((name) => newestChange(join(path, name))));
}

/** Builds dist/web unless it is newer than every source (npm install's prepare script built it). */
export async function ensureStudioBuilt(): Promise<void> {
  const lock = join(ROOT, 'dist/.web-build-lock');
  mkdirSync(join(ROOT, 'dist'), { recursive: true });
  // Test files run in parallel processes: one builds, the others wait for it.
  for (let waited = 0; ; waited += 200) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (waited > 120_000) rmSync(lock, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    const stale = !existsSync(BUILT) || Math.max(...SOURCES.map((s) => newestChange(join(ROOT, s)))) > statSync(BUILT).mtimeMs;
    if (!stale) return;
    const vite = spawnSync(process.execPath, [join(ROOT, 'scripts/build-web.mjs')], { cwd: ROOT, encoding: 'utf8' });
    if (vite.status !== 0) throw new Error(`building the Studio page failed:\n${vite.stdout}\n${vite.stderr}`);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

export interface RunningServer {
  url: string;
  stop(): Promise<void>;
}

/** `nuri serve --port 0` as a child process, resolved once it says where it listens. */
export function startNuriServe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunningServer> {
  const child: ChildProcess = spawn(process.execPath, [join(ROOT, 'bin/nuri.js'), 'serve', '--port', '0', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const found = /listening on (http:\/\/\S+)/.exec(output);
      if (!found) return;
      child.stdout!.off('data', onData);
      resolve({
        url: found[1],
        stop: async () => {
          if (child.exitCode === null) child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(timer);
        },
      });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (code) => reject(new Error(`nuri serve exited with ${code} before listening:\n${output}`)));
  });
}

export async function launchChromium(): Promise<Browser> {
  return playwright.launch({ executablePath: await chromium.executablePath(), args: chromium.args, headless: true });
}

/** Waits in the page are for a loaded 2-core machine, where a step or a fetch can take seconds. */
export const POLL = { timeout: 30_000, interval: 50 };

/** The job status the page shows in a region's progress panel, once it is one of `statuses`. */
export async function waitForStatus(region: Locator, statuses: string[], timeout = 60_000): Promise<string> {
  const panel = region.locator('.progress');
  await expect.poll(async () => panel.getAttribute('data-status'), { timeout, interval: 50 }).toSatisfy((s) => statuses.includes(s ?? ''));
  return (await panel.getAttribute('data-status'))!;
}

/** A screenshot into `dir`, and into $NURI_STUDIO_SCREENSHOTS too when set (the README's pictures). */
export async function saveScreenshot(page: Page, dir: string, name: string): Promise<void> {
  await page.screenshot({ path: join(dir, `${name}.png`) });
  const docs = process.env.NURI_STUDIO_SCREENSHOTS;
  if (docs) await page.screenshot({ path: join(docs, `${name}.png`) });
}

export interface Studio {
  server: RunningServer;
  browser: Browser;
  page: Page;
  close(): Promise<void>;
}

/**
 * The page built, `nuri serve` with `args` and its outputs in `dir` (graph cache: $NURI_CACHE, or
 * one in `dir`), and a Chromium page open on it that reports the page's own errors.
 */
export async function openStudio(dir: string, args: string[], viewport: { width: number; height: number }): Promise<Studio> {
  await ensureStudioBuilt();
  const [server, browser] = await Promise.all([startNuriServe(['--outputs', join(dir, 'outputs'), ...args], { NURI_CACHE: process.env.NURI_CACHE ?? join(dir, 'cache') }), launchChromium()]);
  const page = await browser.newPage({ viewport });
  page.on('pageerror', (error) => console.error('page error:', error.message));
  await page.goto(server.url);
  return { server, browser, page, close: async () => (await browser.close(), await server.stop()) };
}
