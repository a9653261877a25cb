// Nuri Studio, the browser page, served at `/` from dist/web (built by `npm install`'s prepare
// script, or `npm run build:web`). Without a build, `/` says how to make one instead of a 404.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

/** Where the Vite build of src/web lands. */
export const STUDIO_DIR = fileURLToPath(new URL('../../dist/web', import.meta.url));

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Nuri Studio is not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>Nuri Studio is not built</h1>
<p>The page is built when the project is installed (<code>npm install</code> or <code>npm ci</code> run its
<code>prepare</code> script). To build it now, run this in the project folder and reload:</p>
<pre>npm run build:web</pre>
<p>The API works without it: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</p>
</body></html>`;

export async function registerStudio(app: FastifyInstance, root: string = STUDIO_DIR): Promise<void> {
  if (!existsSync(join(root, 'index.html'))) {
    app.get('/', (_, reply) => reply.code(503).type('text/html; charset=utf-8').send(NOT_BUILT));
    return;
  }
  // Only the page's own files: hashed assets may be cached for good, index.html never.
  await app.register(fastifyStatic, {
    root,
    prefix: '/',
    wildcard: false,
    index: 'index.html',
    setHeaders: (reply, path) => reply.header('cache-control', path.endsWith('index.html') ? 'no-cache' : 'public, max-age=31536000, immutable'),
  });
}
