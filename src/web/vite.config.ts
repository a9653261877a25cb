// Builds the Studio page into dist/web, which `nuri serve` serves at `/`. Everything the page needs
// is bundled: no fonts or scripts from elsewhere at run time.
import { fileURLToPath } from 'node:url';
import preact from '@preact/preset-vite';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  base: './',
  plugins: [preact()],
  build: {
    outDir: fileURLToPath(new URL('../../dist/web', import.meta.url)),
    emptyOutDir: true,
    // Small enough to inline nothing: keeps the Content-Security-Policy simple (self only).
    assetsInlineLimit: 0,
  },
  logLevel: 'warn',
});
