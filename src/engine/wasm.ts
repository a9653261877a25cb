// The engine's WebAssembly kernels (quantize.wat, adamw.wat: the text beside each binary, assembled
// by `npm run build:wasm`). One instance per module and thread, made on first use: its memory is
// the thread's scratch space, grown by the caller and never shrunk.

import { readFileSync } from 'node:fs';

const instances = new Map<string, WebAssembly.Exports>();

/** The exports of `src/engine/<name>.wasm`, instantiated once in this thread. */
export function wasmKernels<T>(name: string): T & { memory: WebAssembly.Memory } {
  let exports = instances.get(name);
  if (!exports) {
    exports = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(new URL(`./${name}.wasm`, import.meta.url)))).exports;
    instances.set(name, exports);
  }
  return exports as T & { memory: WebAssembly.Memory };
}

/** Grows `memory` to at least `bytes`. */
export function reserve(memory: WebAssembly.Memory, bytes: number): void {
  const have = memory.buffer.byteLength;
  if (bytes > have) memory.grow(Math.ceil((bytes - have) / 65536));
}
