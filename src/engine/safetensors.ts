// Safetensors I/O: the checkpoint format of every modern Stable Diffusion release.
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the raw tensor bytes
// (little-endian). Offsets in the header are relative to the start of the data section. Reading is
// lazy: open() parses and checks only the header, tensors are read on demand at their offset, so a
// multi-gigabyte checkpoint costs only the tensors actually used. Nothing in a file is trusted: every
// header field is checked before it is used to index the file.

import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

export type SafetensorsDType =
  | 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte offset of the tensor's first byte in the file. */
  dataOffset: number;
  byteLength: number;
}

export type SafetensorsData =
  | Float64Array | Float32Array | Uint16Array | BigInt64Array | BigUint64Array
  | Int32Array | Uint32Array | Int16Array | Int8Array | Uint8Array;

export interface SafetensorsTensor {
  dtype: SafetensorsDType;
  shape: number[];
  /** Native typed array; F16 and BF16 come as their raw bits in a Uint16Array. */
  data: SafetensorsData;
}

export type WritableTensor = { dtype: SafetensorsDType; shape: number[]; data: ArrayBufferView };

const ITEM_SIZE: Record<SafetensorsDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

const TYPED_ARRAY: Record<SafetensorsDType, new (buffer: ArrayBuffer, byteOffset: number, length: number) => SafetensorsData> = {
  F64: Float64Array, F32: Float32Array, F16: Uint16Array, BF16: Uint16Array, I64: BigInt64Array,
  I32: Int32Array, I16: Int16Array, I8: Int8Array, U64: BigUint64Array, U32: Uint32Array,
  U16: Uint16Array, U8: Uint8Array, BOOL: Uint8Array,
};

const MAX_HEADER_BYTES = 100_000_000;
// Node's fs calls take an int32 length; larger tensors are read and written in chunks.
const IO_CHUNK = 1 << 30;

// The format is little-endian and typed arrays use host order: refuse rather than silently swap.
if (endianness() !== 'LE') throw new Error('safetensors: big-endian hosts are not supported');

function fail(path: string, problem: string): never {
  throw new Error(`safetensors file "${path}": ${problem}`);
}

function isDType(value: unknown): value is SafetensorsDType {
  return typeof value === 'string' && Object.hasOwn(ITEM_SIZE, value);
}

function isDim(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Top-level keys of a JSON object text, in order and with duplicates kept (JSON.parse silently
 * keeps the last duplicate and moves integer-like keys first). The text must already be known to
 * be valid JSON whose top level is an object.
 */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      if (depth === 1 && expectKey) {
        keys.push(JSON.parse(text.slice(i, j + 1)) as string); // decodes escapes exactly as JSON does
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      depth++;
      if (depth === 1) expectKey = true;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x2c /* , */ && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

function readFully(fd: number, buf: Buffer, position: number, path: string): void {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, Math.min(IO_CHUNK, buf.length - done), position + done);
    if (n === 0) fail(path, `unexpected end of file at byte ${position + done} (file changed or truncated since open?)`);
    done += n;
  }
}

function writeFully(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, Math.min(IO_CHUNK, bytes.length - done));
}

function parseHeader(path: string, json: string, dataStart: number, dataLength: number) {
  let header: unknown;
  try {
    header = JSON.parse(json);
  } catch (e) {
    fail(path, `header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    fail(path, `header must be a JSON object, got ${Array.isArray(header) ? 'an array' : typeof header}`);
  }
  const fields = header as Record<string, unknown>;
  const keys = topLevelKeys(json);
  const seen = new Set<string>();
  for (const key of keys) {
    if (seen.has(key)) fail(path, `duplicate tensor name ${JSON.stringify(key)} in header`);
    seen.add(key);
  }

  const metadata: Record<string, string> = {};
  const entries = new Map<string, SafetensorsEntry>();
  const spans: { name: string; begin: number; end: number }[] = [];
  for (const name of keys) {
    const value = fields[name];
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, '__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') fail(path, `__metadata__ value for ${JSON.stringify(k)} must be a string, got ${JSON.stringify(v)}`);
        Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    const where = `tensor ${JSON.stringify(name)}`;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, `${where}: entry must be an object`);
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (dtype === undefined || shape === undefined || offsets === undefined) {
      fail(path, `${where}: entry must have "dtype", "shape" and "data_offsets"`);
    }
    if (typeof dtype !== 'string') fail(path, `${where}: "dtype" must be a string, got ${JSON.stringify(dtype)}`);
    if (!isDType(dtype)) fail(path, `${where}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape)) fail(path, `${where}: "shape" must be an array, got ${JSON.stringify(shape)}`);
    if (!shape.every(isDim)) fail(path, `${where}: "shape" ${JSON.stringify(shape)} must hold non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isDim)) {
      fail(path, `${where}: "data_offsets" must be [begin, end] of non-negative integers, got ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) fail(path, `${where}: data_offsets [${begin}, ${end}] begin after end`);
    if (end > dataLength) {
      fail(path, `${where}: data_offsets [${begin}, ${end}] run past the end of the data section (${dataLength} bytes)`);
    }
    const expected = numel(shape) * ITEM_SIZE[dtype];
    if (expected !== end - begin) {
      fail(path, `${where}: dtype ${dtype} shape [${shape.join(', ')}] needs ${expected} bytes, but data_offsets [${begin}, ${end}] hold ${end - begin}`);
    }
    entries.set(name, { name, dtype, shape: [...shape], dataOffset: dataStart + begin, byteLength: end - begin });
    if (end > begin) spans.push({ name, begin, end });
  }

  // Sorted by start, a tensor overlaps some earlier one iff it starts before the furthest end so far.
  spans.sort((a, b) => a.begin - b.begin);
  let furthest: (typeof spans)[number] | undefined;
  for (const span of spans) {
    if (furthest && span.begin < furthest.end) {
      fail(path, `tensors ${JSON.stringify(furthest.name)} [${furthest.begin}, ${furthest.end}] and ${JSON.stringify(span.name)} [${span.begin}, ${span.end}] overlap`);
    }
    if (!furthest || span.end > furthest.end) furthest = span;
  }
  return { metadata, entries };
}

export class SafetensorsFile {
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    readonly metadata: Record<string, string>,
    private readonly entries: Map<string, SafetensorsEntry>,
  ) {}

  /** Reads and validates the header only; tensor bytes are read when asked for. */
  static open(path: string): SafetensorsFile {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size < 8) fail(path, `file is truncated: ${size} bytes, shorter than the 8-byte header length`);
      const lengthBytes = Buffer.alloc(8);
      readFully(fd, lengthBytes, 0, path);
      const headerLength = lengthBytes.readBigUInt64LE(0);
      if (headerLength > BigInt(MAX_HEADER_BYTES)) {
        fail(path, `header length ${headerLength} is over the ${MAX_HEADER_BYTES}-byte limit (corrupt or not a safetensors file)`);
      }
      const n = Number(headerLength);
      if (8 + n > size) fail(path, `file is truncated: header length ${n} runs past the end of the file (${size} bytes)`);
      const headerBytes = Buffer.alloc(n);
      readFully(fd, headerBytes, 8, path);
      let json: string;
      try {
        json = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
      } catch {
        fail(path, 'header is not valid UTF-8');
      }
      const { metadata, entries } = parseHeader(path, json, 8 + n, size - 8 - n);
      return new SafetensorsFile(path, metadata, entries);
    } finally {
      closeSync(fd);
    }
  }

  /** Tensor names in the order the header lists them. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  entry(name: string): SafetensorsEntry {
    const found = this.entries.get(name);
    if (!found) fail(this.path, `no tensor named ${JSON.stringify(name)}`);
    return { ...found, shape: [...found.shape] };
  }

  /** The tensor's raw little-endian bytes, in a Buffer that owns its (aligned) ArrayBuffer. */
  readBytes(name: string): Buffer {
    const { dataOffset, byteLength } = this.entry(name);
    const bytes = Buffer.from(new ArrayBuffer(byteLength));
    this.fd ??= openSync(this.path, 'r');
    readFully(this.fd, bytes, dataOffset, this.path);
    return bytes;
  }

  read(name: string): SafetensorsTensor {
    const { dtype, shape, byteLength } = this.entry(name);
    const bytes = this.readBytes(name);
    return { dtype, shape, data: new TYPED_ARRAY[dtype](bytes.buffer as ArrayBuffer, 0, byteLength / ITEM_SIZE[dtype]) };
  }

  /** Any dtype converted to float32 (64-bit integers beyond 2^24 lose precision, as in any cast). */
  readFloat32(name: string): Float32Array {
    const { dtype, data } = this.read(name);
    if (dtype === 'F32') return data as Float32Array;
    if (dtype === 'F16') return float16ToFloat32(data as Uint16Array);
    if (dtype === 'BF16') return bfloat16ToFloat32(data as Uint16Array);
    const out = new Float32Array(data.length);
    if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
      for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
    } else {
      out.set(data);
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Every tensor of a (small) file, in file order. */
export function readSafetensors(path: string): Map<string, SafetensorsTensor> {
  const file = SafetensorsFile.open(path);
  try {
    return new Map(file.names().map((name) => [name, file.read(name)]));
  } finally {
    file.close();
  }
}

/**
 * Writes a safetensors file atomically: all tensors are checked first, then the bytes go to a
 * temporary file in the same folder, which is fsynced and renamed over `path`, so readers never
 * see a half-written checkpoint.
 */
export function writeSafetensors(
  path: string,
  tensors: Record<string, WritableTensor> | Map<string, WritableTensor>,
  metadata?: Record<string, string>,
): void {
  const list = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))];
  for (const [name, { dtype, shape, data }] of list) {
    const where = `tensor ${JSON.stringify(name)}`;
    if (name === '__metadata__' || name === '') fail(path, `${where}: reserved or empty tensor name`);
    if (!isDType(dtype)) fail(path, `${where}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isDim)) fail(path, `${where}: shape ${JSON.stringify(shape)} must hold non-negative integers`);
    if (!ArrayBuffer.isView(data)) fail(path, `${where}: data must be a typed array or DataView`);
    const expected = numel(shape) * ITEM_SIZE[dtype];
    if (data.byteLength !== expected) {
      fail(path, `${where}: dtype ${dtype} shape [${shape.join(', ')}] needs ${expected} bytes, but data holds ${data.byteLength}`);
    }
  }
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== 'string') fail(path, `__metadata__ value for ${JSON.stringify(k)} must be a string`);
  }

  // Widest dtypes first (stable, so equal widths keep the caller's order): every tensor then starts
  // at a multiple of its item size, so memory-mapped readers and ORT external data can use it in place.
  list.sort((a, b) => ITEM_SIZE[b[1].dtype] - ITEM_SIZE[a[1].dtype]);
  // Built by hand rather than JSON.stringify(object), which would move integer-like names first.
  const parts: string[] = [];
  if (metadata && Object.keys(metadata).length > 0) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  let offset = 0;
  for (const [name, { dtype, shape, data }] of list) {
    const spec = { dtype, shape, data_offsets: [offset, offset + data.byteLength] };
    parts.push(`${JSON.stringify(name)}:${JSON.stringify(spec)}`);
    offset += data.byteLength;
  }
  let header = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  // Pad with spaces (valid JSON whitespace) so the data section starts 8-byte aligned.
  const padded = Math.ceil(header.length / 8) * 8;
  header = Buffer.concat([header, Buffer.alloc(padded - header.length, 0x20)]);
  const lengthBytes = Buffer.alloc(8);
  lengthBytes.writeBigUInt64LE(BigInt(header.length));

  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(temp, 'wx');
  try {
    writeFully(fd, lengthBytes);
    writeFully(fd, header);
    for (const [, { data }] of list) writeFully(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    fsyncSync(fd);
    closeSync(fd);
    renameSync(temp, path);
  } catch (e) {
    try { closeSync(fd); } catch { /* already closed */ }
    try { unlinkSync(temp); } catch { /* never created or already renamed */ }
    throw e;
  }
}

// ---- 16-bit float conversions -------------------------------------------------------------------

let f16Table: Uint32Array | undefined;

/** float32 bit patterns of all 65536 float16 values, built once. */
function float16Table(): Uint32Array {
  if (f16Table) return f16Table;
  const table = new Uint32Array(65536);
  const f32 = new Float32Array(1);
  const bits = new Uint32Array(f32.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0x1f) {
      table[h] = sign | 0x7f800000 | (mant << 13); // inf, or NaN keeping its payload
    } else {
      f32[0] = exp === 0 ? mant * 2 ** -24 : (1024 + mant) * 2 ** (exp - 25); // exact in float32
      table[h] = sign | bits[0]!;
    }
  }
  return (f16Table = table);
}

/** `into`: where to write the floats (its first bits.length values), instead of a new array. */
export function float16ToFloat32(bits: Uint16Array, into?: Float32Array): Float32Array {
  const table = float16Table();
  const floats = into ? into.subarray(0, bits.length) : new Float32Array(bits.length);
  const out = new Uint32Array(floats.buffer, floats.byteOffset, bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
  return floats;
}

/** Round-to-nearest-even, overflow to ±inf, gradual underflow to subnormals, NaN stays NaN. */
export function float32ToFloat16(values: Float32Array): Uint16Array {
  const input = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < input.length; i++) {
    const x = input[i]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    const e = exp - 112; // rebias 127 -> 15
    let h: number;
    if (exp === 0xff) {
      h = mant === 0 ? 0x7c00 : 0x7e00 | (mant >>> 13); // quiet NaN, top payload bits kept
    } else if (e >= 31) {
      h = 0x7c00;
    } else if (e <= 0) {
      // Subnormal (or zero) in float16: shift the full 24-bit significand into place and round.
      if (e < -10) {
        h = 0; // below half the smallest subnormal
      } else {
        const m = mant | 0x800000;
        const shift = 14 - e;
        h = m >>> shift;
        const rem = m & ((1 << shift) - 1);
        const half = 1 << (shift - 1);
        if (rem > half || (rem === half && (h & 1))) h++; // a carry into 0x400 is the smallest normal
      }
    } else {
      h = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // a carry may reach 0x7c00 = inf, as it should
    }
    out[i] = sign | h;
  }
  return out;
}

export function bfloat16ToFloat32(bits: Uint16Array, into?: Float32Array): Float32Array {
  const floats = into ? into.subarray(0, bits.length) : new Float32Array(bits.length);
  const out = new Uint32Array(floats.buffer, floats.byteOffset, bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i]! << 16;
  return floats;
}

/** Round-to-nearest-even; NaN stays NaN even when its payload lies only in the dropped bits. */
export function float32ToBfloat16(values: Float32Array): Uint16Array {
  const input = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < input.length; i++) {
    const x = input[i]!;
    if ((x & 0x7fffffff) > 0x7f800000) out[i] = (x >>> 16) | 0x0040;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}
