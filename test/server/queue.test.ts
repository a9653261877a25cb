// The queue through the API: cancelling (running and queued) without touching other jobs, a full
// queue, a restart with history, results that are never partial, and the API token.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import type { JobRecord } from '../../src/server/jobs.ts';
import { startServer } from '../../src/server/server.ts';
import { type TestServer, tempOutputs, testServer } from './helpers.ts';

/** Resolves once the job has reported a sampling step at least `step`. */
function reachedStep(server: TestServer, id: string, step: number): Promise<void> {
  return new Promise((resolve) => {
    const stop = server.queue.subscribe((e) => {
      if (e.id === id && e.type === 'progress' && e.phase === 'sampling' && e.step >= step) {
        stop();
        resolve();
      }
    });
  });
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

describe('cancel', () => {
  it('stops a running job between steps and a queued one at once, while another job completes untouched', async () => {
    const server = await testServer();
    try {
      const long = await server.submit('generate', { prompt: 'a long job', steps: 150, seed: 1 });
      const other = await server.submit('generate', { prompt: 'a red apple', steps: 3, seed: 7 });
      const queued = await server.submit('generate', { prompt: 'never run', steps: 3, seed: 8 });
      await reachedStep(server, long, 2);

      const cancelledQueued = await server.request('POST', `/api/v1/jobs/${queued}/cancel`);
      expect(cancelledQueued.body.status).toBe('cancelled');
      const cancelling = await server.request('POST', `/api/v1/jobs/${long}/cancel`);
      expect(cancelling.status).toBe(200);

      const longDone = await server.queue.wait(long);
      expect(longDone.status).toBe('cancelled');
      expect(longDone.progress.step).toBeLessThan(150);
      expect(longDone.images).toEqual([]);
      const otherDone = await server.queue.wait(other);
      expect(otherDone.status).toBe('completed');
      expect(otherDone.info.seeds).toEqual([7]);
      const queuedDone = await server.queue.get(queued);
      expect(queuedDone).toMatchObject({ status: 'cancelled', startedAt: null, images: [] });
      // Cancelling a finished job changes nothing.
      expect((await server.request('POST', `/api/v1/jobs/${other}/cancel`)).body.status).toBe('completed');
      expect((await server.request('POST', '/api/v1/jobs/job-000000000000-000000/cancel')).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});

describe('a full queue', () => {
  it('answers 429 with Retry-After', async () => {
    const server = await testServer({ queueSize: 1 });
    try {
      const running = await server.submit('generate', { prompt: 'a long job', steps: 150 });
      await reachedStep(server, running, 1);
      const waiting = await server.submit('generate', { prompt: 'waits', steps: 2 });
      const refused = await server.request('POST', '/api/v1/jobs', { type: 'generate', params: { prompt: 'refused', steps: 2 } });
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(refused.body.error).toMatch(/queue is full/);
      await server.queue.cancel(waiting);
      await server.queue.cancel(running);
      expect((await server.queue.wait(running)).status).toBe('cancelled');
      // With room again, jobs are taken.
      expect((await server.request('POST', '/api/v1/jobs', { type: 'generate', params: { prompt: 'taken', steps: 2 } })).status).toBe(202);
    } finally {
      await server.close();
    }
  });
});

describe('restart', () => {
  it('keeps results and history; fails jobs that were running, runs jobs that were queued', async () => {
    const outputs = tempOutputs();
    const first = await testServer({ outputs });
    const done = await first.submit('generate', { prompt: 'a red apple', steps: 2, seed: 11 });
    await first.queue.wait(done);
    const long = await first.submit('generate', { prompt: 'a long job', steps: 150 });
    const later = await first.submit('generate', { prompt: 'queued at shutdown', steps: 2, seed: 12 });
    await reachedStep(first, long, 1);
    await first.close();
    // A record as a server killed mid-job leaves it.
    const killed = JSON.parse(readFileSync(join(outputs, 'jobs', `${done}.json`), 'utf8')) as JobRecord;
    const killedId = done.replace(/-[0-9a-f]{6}$/, '-ffffff');
    writeFileSync(join(outputs, 'jobs', `${killedId}.json`), JSON.stringify({ ...killed, id: killedId, status: 'running', images: [], finishedAt: null }));

    const second = await testServer({ outputs });
    try {
      const history = await second.request('GET', '/api/v1/jobs?limit=100');
      expect(history.body.total).toBe(4);
      const byId = Object.fromEntries(history.body.jobs.map((j: any) => [j.id, j]));
      expect(byId[done]).toMatchObject({ status: 'completed', images: [`/api/v1/images/${done}-1.png`] });
      expect(byId[killedId].status).toBe('failed');
      expect(byId[killedId].error).toMatch(/server stopped while this job was running/);
      expect(byId[long].status).toBe('cancelled');
      expect((await second.queue.wait(later)).status).toBe('completed');
      const png = await fetch(`${second.url}/api/v1/images/${done}-1.png`);
      expect(png.status).toBe(200);

      // Nothing half-written: no temporary files, every PNG decodes, every record parses.
      const files = filesUnder(outputs);
      expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
      const pngs = files.filter((f) => f.endsWith('.png'));
      expect(pngs.length).toBe(2);
      for (const f of pngs) expect((await sharp(f).metadata()).width).toBe(64);
      for (const f of files.filter((f) => f.endsWith('.json'))) expect(() => JSON.parse(readFileSync(f, 'utf8'))).not.toThrow();
    } finally {
      await second.close();
    }
  });
});

describe('API token', () => {
  it('refuses to listen beyond loopback without a token', async () => {
    await expect(startServer({ outputs: tempOutputs(), host: '0.0.0.0', port: 0 })).rejects.toThrow(/token/);
  });

  it('with a token, needs it on every request but GET /health', async () => {
    const server = await testServer({ token: 's3cret-token' });
    try {
      expect((await server.request('GET', '/health')).status).toBe(200);
      const none = await server.request('GET', '/api/v1/models');
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toBe('Bearer');
      expect((await server.request('GET', '/api/v1/models', undefined, { authorization: 'Bearer wrong' })).status).toBe(401);
      expect((await server.request('GET', '/api/v1/events', undefined, { authorization: 'Bearer s3cret-tokeN' })).status).toBe(401);
      expect((await server.request('POST', '/api/v1/jobs', { type: 'generate', params: { prompt: 'x' } })).status).toBe(401);
      expect((await server.request('GET', '/api/v1/models', undefined, { authorization: 'Bearer s3cret-token' })).status).toBe(200);
      expect(existsSync(server.store.jobsDir)).toBe(true);
      expect(readdirSync(server.store.jobsDir)).toEqual([]); // the refused submit queued nothing
    } finally {
      await server.close();
    }
  });

  it('a browser trades the token for a cookie; the Studio page itself is public', async () => {
    const server = await testServer({ token: 's3cret-token' });
    try {
      const page = await server.request('GET', '/');
      expect([200, 503]).toContain(page.status); // the page, or how to build it: never a 401
      expect((await server.request('GET', '/sdapi/v1/sd-models')).status).toBe(401);
      // The router decodes paths: an encoded letter must not make an API route look public.
      for (const path of ['/%61pi/v1/jobs', '/%73dapi/v1/progress', '/api/v1/%6Aobs', '/%61pi/v1/events']) expect((await server.request('GET', path)).status, path).toBe(401);
      expect((await server.request('POST', '/api/v1/session', { token: 'wrong' })).status).toBe(401);
      expect((await server.request('GET', '/api/v1/models', undefined, { cookie: 'nuri_token=wrong' })).status).toBe(401);
      const signedIn = await server.request('POST', '/api/v1/session', { token: 's3cret-token' });
      expect(signedIn.status).toBe(204);
      const cookie = signedIn.headers.get('set-cookie') ?? '';
      expect(cookie).toMatch(/^nuri_token=s3cret-token; Path=\/; HttpOnly; SameSite=Strict$/);
      const jar = { cookie: cookie.split(';')[0] };
      expect((await server.request('GET', '/api/v1/models', undefined, jar)).status).toBe(200);
      expect((await server.request('GET', '/sdapi/v1/sd-models', undefined, jar)).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});
