// Which ONNX Runtime execution providers this install can run, so that asking for one it cannot
// (`--device cuda` on an install without the CUDA libraries) fails at once with a clear message
// instead of deep inside the first session.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';

/** Providers compiled into the binding, and whether each one's libraries are present. */
export function executionProviders(): { name: string; available: boolean }[] {
  return ort.listSupportedBackends().map((b) => ({ name: b.name, available: b.bundled || providerLibraryPresent(b.name) }));
}

/** Throws unless `name` can run here, naming what is missing. */
export function checkExecutionProvider(name: string): void {
  const providers = executionProviders();
  const found = providers.find((p) => p.name === name);
  const usable = providers.filter((p) => p.available).map((p) => p.name).join(', ');
  if (!found) throw new Error(`execution provider "${name}" is not in this onnxruntime-node build (usable here: ${usable})`);
  if (!found.available) {
    throw new Error(
      `execution provider "${name}" is not installed: onnxruntime-node ships without its ${name.toUpperCase()} libraries (its install script downloads them; this project's package.json denies that script). Usable here: ${usable}`,
    );
  }
}

function providerLibraryPresent(name: string): boolean {
  const root = join(dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json')), 'bin');
  const wanted = new RegExp(`^(lib)?onnxruntime_providers_${name}\\.(so|dll|dylib)`);
  const search = (dir: string, depth: number): boolean =>
    readdirSync(dir).some((entry) => {
      const path = join(dir, entry);
      if (wanted.test(entry)) return true;
      return depth > 0 && statSync(path).isDirectory() && search(path, depth - 1);
    });
  return existsSync(root) && search(root, 4);
}
