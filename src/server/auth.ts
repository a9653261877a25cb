// Who may talk to the server. Loopback needs nothing; any other address needs an API token, and
// with a token every request but GET /health must carry it: `Authorization: Bearer <token>`, or the
// cookie a browser gets from POST /api/v1/session (a page's <img> and EventSource cannot send
// headers). The Studio's own files are public (code, no data), so the page can ask for the token.

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

/** The cookie POST /api/v1/session sets: HttpOnly (no script reads it), sent to this site only. */
export const SESSION_COOKIE = 'nuri_token';

/**
 * Routes anyone may use: the health check, GETs of the Studio's static files, and the sign-in.
 * Decided on the route the request matched, never on the raw URL: the router decodes it, so
 * `/%61pi/v1/jobs` would otherwise pass as public and be served by /api/v1/jobs.
 */
function isPublic(method: string, route: string | undefined): boolean {
  if (route === undefined) return false;
  if (method === 'POST') return route === '/api/v1/session';
  if (method !== 'GET' && method !== 'HEAD') return false;
  return route === '/health' || !['/api/', '/sdapi/', '/controlnet/'].some((prefix) => route.startsWith(prefix));
}

function cookieToken(header: string | undefined): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === SESSION_COOKIE) return decodeURIComponent(value.join('='));
  }
  return undefined;
}

export function requireToken(app: FastifyInstance, token: string): void {
  app.addHook('onRequest', async (request, reply) => {
    if (isPublic(request.method, request.routeOptions.url)) return;
    const bearer = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? '')?.[1].trim();
    const given = bearer ?? cookieToken(request.headers.cookie);
    if (given === undefined || !tokensMatch(given, token)) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer')
        .send({ error: given === undefined ? 'this server needs an API token: Authorization: Bearer <token>' : 'wrong API token' });
    }
  });
  // A browser trades the token for the cookie once; a wrong token gets the same 401 as elsewhere.
  app.post('/api/v1/session', async (request, reply) => {
    const given = (request.body as { token?: unknown } | undefined)?.token;
    if (typeof given !== 'string' || !tokensMatch(given, token)) return reply.code(401).send({ error: 'wrong API token', field: 'token' });
    const cookie = `${SESSION_COOKIE}=${encodeURIComponent(given)}; Path=/; HttpOnly; SameSite=Strict`;
    return reply.code(204).header('set-cookie', cookie).send();
  });
}
