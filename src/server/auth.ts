// Who may talk to the server. Loopback needs nothing; any other address needs an API token, and
// with a token every request but GET /health must carry `Authorization: Bearer <token>`.

import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { FastifyInstance } from 'fastify';

/** 127.0.0.0/8, ::1 and localhost: reachable only from this machine. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || host === '[::1]';
}

/** Refuses a binding reachable from other machines without a token. */
export function checkBinding(host: string, token: string | undefined): void {
  if (!isLoopback(host) && !token) {
    throw new Error(`--host ${host} is reachable from other machines: give an API token (--token T or $NURI_TOKEN), or bind 127.0.0.1`);
  }
}

/** Equal tokens, compared in time that does not depend on where they differ (hashes first, so lengths leak nothing). */
export function tokensMatch(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export function requireToken(app: FastifyInstance, token: string): void {
  app.addHook('onRequest', async (request, reply) => {
    if (request.method === 'GET' && request.url.split('?')[0] === '/health') return;
    const header = request.headers.authorization ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match || !tokensMatch(match[1].trim(), token)) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer')
        .send({ error: match ? 'wrong API token' : 'this server needs an API token: Authorization: Bearer <token>' });
    }
  });
}
