// Writes a q8 graph's int8 weights file (emit.ts plans it: where each weight's values and scales go).
// A q8 model's first run waits for it before its first step: for the SD-1.5 UNet that is reading
// 859M floats from the checkpoint and quantising them (quantize.wat), ~2 s on one thread. Large
// files are split across worker threads (quantize-worker.mjs), each reading its own weights and
// writing its own byte ranges of the one file; small ones are written here.

import { closeSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { TRANSPOSE_BLOCK_ROWS, TransposedQuantizer } from './quantize.ts';

/** One weight to quantise: where its floats are in a checkpoint file, and where its int8 form goes. */
export interface QuantizeItem {
  /** The checkpoint file, the tensor's first byte in it, its dtype and value count. */
  file: string;
  offset: number;
  dtype: 'F32' | 'F16' | 'BF16';
  count: number;
  rows: number;
  /** Input channels (a convolution's Cin; a linear's K). */
  cin: number;
  levels: number;
  valuesOffset: number;
  scalesOffset: number;
}

/** Below this many values in all, the worker threads' start-up costs more than they save. */
const PARALLEL_FROM_VALUES = 32 * 2 ** 20;

/**
 * Writes every item's int8 values and float32 scales into `path` (created, `bytes` long). `threads`
 * defaults to the cores Node sees, and splits only files of at least 32M values (`parallelFrom`).
 */
export async function writeQuantizedFile(path: string, bytes: number, items: QuantizeItem[], options: { threads?: number; parallelFrom?: number } = {}): Promise<void> {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, bytes);
  } finally {
    closeSync(fd);
  }
  const total = items.reduce((n, item) => n + item.count, 0);
  const threads = Math.min(options.threads ?? availableParallelism(), items.length);
  if (threads < 2 || total < (options.parallelFrom ?? PARALLEL_FROM_VALUES)) return writeItems(path, items);
  // Largest first, each to the thread with the least so far: shares within one weight of even.
  const shares: QuantizeItem[][] = Array.from({ length: threads }, () => []);
  const load = new Array<number>(threads).fill(0);
  for (const item of [...items].sort((a, b) => b.count - a.count)) {
    const t = load.indexOf(Math.min(...load));
    shares[t].push(item);
    load[t] += item.count;
  }
  await Promise.all(shares.map((share) => runWorker(path, share)));
}

/**
 * Quantises and writes items into the existing file at `path` (a worker thread runs this too). Each
 * weight is read TRANSPOSE_BLOCK_ROWS rows at a time straight into the quantizer's memory, so its
 * floats are still in cache when they are quantised (a whole weight of up to 118 MB read at once
 * made the read and the pass over it each go at memory speed).
 */
export function writeItems(path: string, items: QuantizeItem[]): void {
  const out = openSync(path, 'r+');
  const files = new Map<string, number>();
  try {
    for (const item of items) {
      let input = files.get(item.file);
      if (input === undefined) files.set(item.file, (input = openSync(item.file, 'r')));
      const n = item.count / item.rows;
      const quantizer = new TransposedQuantizer(item.rows, item.cin, n, item.levels);
      const width = item.dtype === 'F32' ? 4 : 2;
      for (let r0 = 0; r0 < item.rows; r0 += TRANSPOSE_BLOCK_ROWS) {
        const count = Math.min(TRANSPOSE_BLOCK_ROWS, item.rows - r0);
        // F32 is read in place; F16 and BF16 are read beside it and widened (quantize.wat).
        const floats = quantizer.floats(count);
        readFully(input, item, r0 * n * width, width === 4 ? new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength) : quantizer.halves(count));
        if (item.dtype !== 'F32') quantizer.widen(item.dtype, count);
        quantizer.quantize(r0, count);
      }
      const values = quantizer.values();
      const scales = quantizer.scales();
      writeSync(out, values, 0, values.length, item.valuesOffset);
      writeSync(out, new Uint8Array(scales.buffer, scales.byteOffset, scales.byteLength), 0, scales.byteLength, item.scalesOffset);
    }
  } finally {
    closeSync(out);
    for (const fd of files.values()) closeSync(fd);
  }
}

/** Fills `into` from the item's bytes, starting `from` bytes into the tensor. */
function readFully(fd: number, item: QuantizeItem, from: number, into: Uint8Array): void {
  for (let done = 0; done < into.length; ) {
    const n = readSync(fd, into, done, into.length - done, item.offset + from + done);
    if (n === 0) throw new Error(`${item.file}: ends before the ${item.count} ${item.dtype} values at byte ${item.offset}`);
    done += n;
  }
}

const WORKER = new URL('./quantize-worker.mjs', import.meta.url);

function runWorker(path: string, items: QuantizeItem[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER, { workerData: { path, items } });
    worker.once('error', reject);
    worker.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`the int8 weights writer for ${path} stopped with exit code ${code}`))));
  });
}
