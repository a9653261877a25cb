// A private redis-server for a test file: Debian's package, started on a free loopback port with a
// temporary folder and no persistence, stopped after. On a fresh machine where `redis-server` is
// missing and we are root, it is installed with apt-get once (a lock folder keeps parallel test
// files and parallel test runs from racing); otherwise the error says how to install it.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const INSTALL_LOCK = join(tmpdir(), 'nuri-redis-install.lock');
/** A lock older than this is left over from a killed run. */
const STALE_LOCK_MS = 10 * 60_000;

function onPath(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function lockAge(): number | undefined {
  try {
    return Date.now() - statSync(INSTALL_LOCK).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Makes sure `redis-server` is on PATH, installing Debian's package when we may. */
export async function ensureRedisServer(): Promise<void> {
  if (onPath('redis-server')) return;
  if (process.getuid?.() !== 0) {
    throw new Error('redis-server is not installed and the Redis tests need it: run `sudo apt-get install -y redis-server` (Debian/Ubuntu) or put a redis-server on PATH');
  }
  if (!onPath('apt-get')) {
    throw new Error('redis-server is not installed and apt-get is not available to install it: put a redis-server (Redis 6.2 or later) on PATH');
  }
  for (;;) {
    try {
      mkdirSync(INSTALL_LOCK);
      break;
    } catch {
      // Another test file (or test run) is installing: wait for it, or take over a stale lock.
      if (onPath('redis-server')) return;
      if ((lockAge() ?? 0) > STALE_LOCK_MS) rmSync(INSTALL_LOCK, { recursive: true, force: true });
      await sleep(1000);
    }
  }
  try {
    if (onPath('redis-server')) return;
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('apt-get', ['update'], { stdio: 'inherit', env });
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'redis-server'], { stdio: 'inherit', env });
    if (!onPath('redis-server')) throw new Error('apt-get installed redis-server but it is not on PATH');
  } finally {
    rmSync(INSTALL_LOCK, { recursive: true, force: true });
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export interface RedisServer {
  url: string;
  stop(): Promise<void>;
}

/** Starts a throw-away redis-server; resolves once it accepts connections. */
export async function startRedisServer(): Promise<RedisServer> {
  await ensureRedisServer();
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'nuri-redis-'));
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await new Promise((resolve) => child.once('exit', resolve));
      }
      rmSync(dir, { recursive: true, force: true });
    };
    if (await ready(child)) return { url: `redis://127.0.0.1:${port}`, stop };
    await stop();
    // The port was taken between finding it and binding it: try another.
    if (attempt >= 3) throw new Error(`redis-server did not start on 127.0.0.1:${port}`);
  }
}

function ready(child: ChildProcess): Promise<boolean> {
  return new Promise((resolve) => {
    let log = '';
    const timer = setTimeout(() => resolve(false), 15_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}
