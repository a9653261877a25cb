// `npm run build:wasm`: assembles the engine's WebAssembly text (src/engine/*.wat) into the binaries
// committed beside it, with WABT (a dev dependency: installs do not need it, since the binaries
// are in the repository). test/engine/quantize.test.ts checks that each binary is its text's.

import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import wabtModule from 'wabt';

/** The binary of one .wat text (SIMD enabled). */
export async function assemble(path) {
  const wabt = await wabtModule();
  const module = wabt.parseWat(path, readFileSync(path, 'utf8'), { simd: true });
  try {
    module.validate();
    return Uint8Array.from(module.toBinary({}).buffer);
  } finally {
    module.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = join(import.meta.dirname, '..', 'src', 'engine');
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.wat'))) {
    const bytes = await assemble(join(dir, name));
    writeFileSync(join(dir, name.replace(/\.wat$/, '.wasm')), bytes);
    console.log(`${name} → ${name.replace(/\.wat$/, '.wasm')} (${bytes.length} bytes)`);
  }
}
