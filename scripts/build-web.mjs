// Builds the Studio page (src/web → dist/web) with Vite. npm runs it on install (`prepare`); an
// install without dev dependencies has no Vite, and then the page is left unbuilt with a note
// (`nuri serve` says the same at `/`) instead of failing the install. Plain JS: it runs before
// anything else is known to be there.
import { fileURLToPath } from 'node:url';

let build;
try {
  ({ build } = await import('vite'));
} catch (error) {
  if (error.code !== 'ERR_MODULE_NOT_FOUND') throw error;
  console.warn('nuri: Vite is not installed (dev dependencies left out), so the Studio page is not built; `npm run build:web` builds it.');
  process.exit(0);
}
await build({ configFile: fileURLToPath(new URL('../src/web/vite.config.ts', import.meta.url)) });
