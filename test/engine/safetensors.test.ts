import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SafetensorsFile, readSafetensors, writeSafetensors, float16ToFloat32, float32ToFloat16,
  bfloat16ToFloat32, float32ToBfloat16, type WritableTensor,
} from '../../src/engine/safetensors.ts';
import { TINY_SD, REFERENCE } from '../fixtures.ts';

let dir: string;
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'nuri-safetensors-')); });
afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

let counter = 0;
function tempPath(): string {
  return join(dir, `t${counter++}.safetensors`);
}

/** Hand-made file: header text (or object), then `dataLength` zero bytes; `declaredLength` overrides N. */
function rawFile(header: string | object, dataLength = 0, declaredLength?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(declaredLength ?? BigInt(json.length));
  const path = tempPath();
  writeFileSync(path, Buffer.concat([n, json, Buffer.alloc(dataLength)]));
  return path;
}

const f32Bits = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0]!;
const fromBits = (b: number) => new Float32Array(new Uint32Array([b]).buffer)[0]!;

describe('round trip', () => {
  const tensors: Record<string, WritableTensor> = {
    f64: { dtype: 'F64', shape: [2, 2], data: new Float64Array([1.5, -2, Math.PI, 1e300]) },
    f32: { dtype: 'F32', shape: [3], data: new Float32Array([0.1, -0, Infinity]) },
    f16: { dtype: 'F16', shape: [2], data: new Uint16Array([0x3c00, 0xfc00]) },
    bf16: { dtype: 'BF16', shape: [1, 2], data: new Uint16Array([0x3f80, 0x7fc0]) },
    i64: { dtype: 'I64', shape: [2], data: new BigInt64Array([-(2n ** 62n), 7n]) },
    i32: { dtype: 'I32', shape: [2], data: new Int32Array([-2147483648, 5]) },
    i16: { dtype: 'I16', shape: [3], data: new Int16Array([-32768, 0, 32767]) },
    i8: { dtype: 'I8', shape: [1], data: new Int8Array([-128]) },
    u8: { dtype: 'U8', shape: [5], data: new Uint8Array([0, 1, 2, 254, 255]) },
    bool: { dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
    scalar: { dtype: 'F32', shape: [], data: new Float32Array([42]) },
    empty: { dtype: 'F32', shape: [2, 0, 3], data: new Float32Array(0) },
    '10': { dtype: 'U8', shape: [0], data: new Uint8Array(0) },
  };

  it('writes and reads back every dtype, shape and the metadata', () => {
    const path = tempPath();
    writeSafetensors(path, tensors, { format: 'pt', note: 'ünïcode "quoted"' });
    const back = readSafetensors(path);
    expect(new Set(back.keys())).toEqual(new Set(Object.keys(tensors)));
    for (const [name, t] of Object.entries(tensors)) {
      const r = back.get(name)!;
      expect(r.dtype).toBe(t.dtype);
      expect(r.shape).toEqual(t.shape);
      expect(r.data.constructor).toBe(t.data.constructor);
      expect(Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength))
        .toEqual(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    }
    const file = SafetensorsFile.open(path);
    expect(file.metadata).toEqual({ format: 'pt', note: 'ünïcode "quoted"' });
    file.close();
  });

  it('aligns the data section to 8 bytes, every tensor to its item size, and reports absolute offsets', () => {
    const path = tempPath();
    writeSafetensors(path, new Map<string, WritableTensor>([
      ['a', { dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) }],
      ['b', { dtype: 'F32', shape: [1], data: new Float32Array([7]) }],
    ]));
    const bytes = readFileSync(path);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const file = SafetensorsFile.open(path);
    expect(file.names()).toEqual(['b', 'a']); // widest first
    expect(file.entry('b')).toEqual({ name: 'b', dtype: 'F32', shape: [1], dataOffset: 8 + n, byteLength: 4 });
    expect(file.entry('a').dataOffset).toBe(8 + n + 4);
    expect([...file.readBytes('a')]).toEqual([1, 2, 3]);
    expect(file.has('a')).toBe(true);
    expect(file.has('zz')).toBe(false);
    expect(() => file.entry('zz')).toThrow(/safetensors file ".*": no tensor named "zz"/);
    file.close();
  });

  it('keeps file order for integer-like names and reads lazily after close', () => {
    const path = rawFile('{"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"10":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"2":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}}', 2);
    const file = SafetensorsFile.open(path);
    expect(file.names()).toEqual(['b', '10', '2']);
    file.close();
    expect(file.read('10').data).toEqual(new Uint8Array([0])); // reopens on demand
    file.close();
  });

  it('readFloat32 converts every dtype', () => {
    const path = tempPath();
    writeSafetensors(path, tensors);
    const file = SafetensorsFile.open(path);
    expect([...file.readFloat32('f64')]).toEqual([1.5, -2, Math.fround(Math.PI), Infinity]);
    expect([...file.readFloat32('f16')]).toEqual([1, -Infinity]);
    const bf = file.readFloat32('bf16');
    expect(bf[0]).toBe(1);
    expect(bf[1]).toBeNaN();
    expect([...file.readFloat32('i64')]).toEqual([-(2 ** 62), 7]);
    expect([...file.readFloat32('i32')]).toEqual([-2147483648, 5]);
    expect([...file.readFloat32('i8')]).toEqual([-128]);
    expect([...file.readFloat32('bool')]).toEqual([1, 0]);
    expect([...file.readFloat32('scalar')]).toEqual([42]);
    expect(file.readFloat32('empty').length).toBe(0);
    file.close();
  });
});

describe('float16', () => {
  it('float16 -> float32 -> float16 is the identity on all 65536 patterns (NaN stays NaN)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f = float16ToFloat32(all);
    const back = float32ToFloat16(f);
    for (let h = 0; h < 65536; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff)) {
        expect(Number.isNaN(f[h])).toBe(true);
        expect(back[h]! & 0x7c00).toBe(0x7c00);
        expect(back[h]! & 0x3ff).not.toBe(0);
      } else if (back[h] !== h) {
        expect(back[h]).toBe(h);
      }
    }
  });

  it('decodes known values', () => {
    const f = float16ToFloat32(new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0xfc00, 0x8000, 0x3555]));
    expect([...f]).toEqual([1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, Infinity, -Infinity, -0, 0.333251953125]);
  });

  it('rounds to nearest, ties to even, at every midpoint between neighbouring finite values', () => {
    // Midpoints of float16 neighbours need 12 significant bits: exact in float32.
    for (let h = 0; h < 0x7bff; h++) {
      const [a, b] = float16ToFloat32(new Uint16Array([h, h + 1]));
      const mid = (a! + b!) / 2;
      const even = h % 2 === 0 ? h : h + 1;
      const got = float32ToFloat16(new Float32Array([mid, fromBits(f32Bits(mid) - 1), fromBits(f32Bits(mid) + 1), -mid]));
      if (got[0] !== even || got[1] !== h || got[2] !== h + 1 || got[3] !== (0x8000 | even)) {
        expect([h, ...got]).toEqual([h, even, h, h + 1, 0x8000 | even]);
      }
    }
  });

  it('handles overflow, underflow, inf and nan', () => {
    const got = float32ToFloat16(new Float32Array([65519, 65520, 1e10, -1e10, Infinity, -Infinity, NaN, 2 ** -25, 2 ** -25 * 1.0000001, 3 * 2 ** -25, 1e-10, -1e-10, 2 ** -14 - 2 ** -25]));
    expect([...got]).toEqual([0x7bff, 0x7c00, 0x7c00, 0xfc00, 0x7c00, 0xfc00, 0x7e00, 0, 1, 2, 0, 0x8000, 0x0400]);
    expect(float32ToFloat16(new Float32Array([fromBits(0x7f800001)]))[0]! & 0x3ff).not.toBe(0); // signalling NaN stays NaN
  });
});

describe('bfloat16', () => {
  it('round trips all 65536 patterns and rounds ties to even at every midpoint', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f = bfloat16ToFloat32(all);
    const back = float32ToBfloat16(f);
    for (let h = 0; h < 65536; h++) {
      const nan = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
      if (nan ? (back[h]! & 0x7f80) !== 0x7f80 || (back[h]! & 0x7f) === 0 : back[h] !== h) expect(back[h]).toBe(h);
    }
    for (let h = 0; h < 0x7f7f; h++) {
      const mid = fromBits(((h << 16) + 0x8000) >>> 0);
      const even = h % 2 === 0 ? h : h + 1;
      const got = float32ToBfloat16(new Float32Array([mid, fromBits(f32Bits(mid) - 1), fromBits(f32Bits(mid) + 1)]));
      if (got[0] !== even || got[1] !== h || got[2] !== h + 1) expect([h, ...got]).toEqual([h, even, h, h + 1]);
    }
  });

  it('handles overflow, inf, nan and subnormals', () => {
    const got = float32ToBfloat16(new Float32Array([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, fromBits(0x7f7fffff), -Infinity, NaN, fromBits(0x7f800001), fromBits(0x00010000), -0]));
    expect([...got]).toEqual([0x3f80, 0x3f80, 0x3f82, 0x7f80, 0xff80, 0x7fc0, 0x7fc0, 0x0001, 0x8000]);
    expect([...bfloat16ToFloat32(new Uint16Array([0x0001, 0xc040]))]).toEqual([fromBits(0x00010000), -3]);
  });
});

describe('validation of bad files', () => {
  const t = (offsets: [number, number], extra: object = {}) => ({ dtype: 'F32', shape: [1], data_offsets: offsets, ...extra });

  it('rejects truncated files and bad header lengths', () => {
    const short = tempPath();
    writeFileSync(short, Buffer.from([1, 2, 3]));
    expect(() => SafetensorsFile.open(short)).toThrow(/^safetensors file ".*t\d+\.safetensors": file is truncated: 3 bytes/);
    expect(() => SafetensorsFile.open(rawFile('{}', 0, 1000n))).toThrow(/truncated: header length 1000 runs past the end of the file \(10 bytes\)/);
    expect(() => SafetensorsFile.open(rawFile('{}', 0, 200_000_000n))).toThrow(/header length 200000000 is over the 100000000-byte limit/);
    expect(() => SafetensorsFile.open(rawFile('{}', 0, 2n ** 64n - 1n))).toThrow(/header length 18446744073709551615 is over/);
  });

  it('rejects headers that are not a JSON object', () => {
    expect(() => SafetensorsFile.open(rawFile('{"a": '))).toThrow(/header is not valid JSON/);
    expect(() => SafetensorsFile.open(rawFile('', 0))).toThrow(/header is not valid JSON/);
    expect(() => SafetensorsFile.open(rawFile('[1, 2]'))).toThrow(/header must be a JSON object, got an array/);
    expect(() => SafetensorsFile.open(rawFile('null'))).toThrow(/header must be a JSON object/);
    const badUtf8 = tempPath();
    writeFileSync(badUtf8, Buffer.from([4, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0xff, 0x7d, 0x20]));
    expect(() => SafetensorsFile.open(badUtf8)).toThrow(/header is not valid UTF-8/);
    expect(() => SafetensorsFile.open(rawFile({ __metadata__: { a: 1 } }))).toThrow(/__metadata__ value for "a" must be a string/);
    expect(() => SafetensorsFile.open(rawFile({ __metadata__: [] }))).toThrow(/__metadata__ must be an object/);
  });

  it('rejects entries with missing or mistyped fields', () => {
    expect(() => SafetensorsFile.open(rawFile({ w: 3 }))).toThrow(/tensor "w": entry must be an object/);
    expect(() => SafetensorsFile.open(rawFile({ w: { dtype: 'F32', shape: [1] } }, 4))).toThrow(/tensor "w": entry must have "dtype", "shape" and "data_offsets"/);
    expect(() => SafetensorsFile.open(rawFile({ w: t([0, 4], { dtype: 5 }) }, 4))).toThrow(/tensor "w": "dtype" must be a string, got 5/);
    expect(() => SafetensorsFile.open(rawFile({ w: t([0, 4], { shape: 'x' }) }, 4))).toThrow(/tensor "w": "shape" must be an array/);
    expect(() => SafetensorsFile.open(rawFile({ w: t([0, 4], { data_offsets: [0] }) }, 4))).toThrow(/tensor "w": "data_offsets" must be \[begin, end\]/);
    expect(() => SafetensorsFile.open(rawFile({ w: t([0, 4], { data_offsets: [0, '4'] }) }, 4))).toThrow(/"data_offsets" must be/);
  });

  it('rejects unknown dtypes and bad shapes', () => {
    expect(() => SafetensorsFile.open(rawFile({ w: t([0, 4], { dtype: 'F8' }) }, 4))).toThrow(/tensor "w": unknown dtype "F8"/);
    expect(() => SafetensorsFile.open(rawFile({ w: t([0, 4], { dtype: 'constructor' }) }, 4))).toThrow(/unknown dtype "constructor"/);
    expect(() => SafetensorsFile.open(rawFile({ w: t([0, 4], { shape: [-1] }) }, 4))).toThrow(/tensor "w": "shape" \[-1\] must hold non-negative integers/);
    expect(() => SafetensorsFile.open(rawFile({ w: t([0, 4], { shape: [1.5] }) }, 4))).toThrow(/"shape" \[1.5\] must hold non-negative integers/);
  });

  it('rejects byte lengths that do not match the shape', () => {
    expect(() => SafetensorsFile.open(rawFile({ w: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 10] } }, 10)))
      .toThrow(/tensor "w": dtype F16 shape \[2, 3\] needs 12 bytes, but data_offsets \[0, 10\] hold 10/);
  });

  it('rejects offsets out of range, reversed or overlapping', () => {
    expect(() => SafetensorsFile.open(rawFile({ w: t([4, 8]) }, 6))).toThrow(/tensor "w": data_offsets \[4, 8\] run past the end of the data section \(6 bytes\)/);
    expect(() => SafetensorsFile.open(rawFile({ w: t([8, 4]) }, 8))).toThrow(/tensor "w": data_offsets \[8, 4\] begin after end/);
    expect(() => SafetensorsFile.open(rawFile({ a: t([0, 4]), b: t([2, 6]) }, 8))).toThrow(/tensors "a" \[0, 4\] and "b" \[2, 6\] overlap/);
    expect(() => SafetensorsFile.open(rawFile({ big: { dtype: 'U8', shape: [10], data_offsets: [0, 10] }, c: t([8, 12]), d: t([2, 6]) }, 12)))
      .toThrow(/tensors "big" \[0, 10\] and "d" \[2, 6\] overlap/);
    // Touching spans and zero-size tensors anywhere are fine.
    const ok = SafetensorsFile.open(rawFile({ a: t([0, 4]), b: t([4, 8]), z: { dtype: 'F32', shape: [0], data_offsets: [2, 2] } }, 8));
    expect(ok.names()).toEqual(['a', 'b', 'z']);
  });

  it('rejects duplicate tensor names, including ones spelled with escapes', () => {
    const e = '{"dtype":"U8","shape":[1],"data_offsets":[0,1]}';
    expect(() => SafetensorsFile.open(rawFile(`{"w":${e},"w":${e}}`, 1))).toThrow(/duplicate tensor name "w"/);
    expect(() => SafetensorsFile.open(rawFile(`{"a\\"b":${e}, "a\\u0022b" :${e}}`, 1))).toThrow(/duplicate tensor name "a\\"b"/);
    expect(() => SafetensorsFile.open(rawFile(`{"__metadata__":{"x":"y"},"__metadata__":{}}`))).toThrow(/duplicate tensor name "__metadata__"/);
    // Nested keys and string values that look like keys are not top-level names.
    const f = SafetensorsFile.open(rawFile(`{"__metadata__":{"w":"\\"w\\":{","a\\\\":"b"},"w":${e},"a\\\\\\\\":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2));
    expect(f.names()).toEqual(['w', 'a\\\\']);
    expect(f.metadata).toEqual({ w: '"w":{', 'a\\': 'b' });
  });
});

describe('writing', () => {
  it('is atomic: a failing write leaves no file and no temp file, and keeps the old file', () => {
    const sub = mkdtempSync(join(dir, 'atomic-'));
    const path = join(sub, 'model.safetensors');
    expect(() => writeSafetensors(path, { w: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } }))
      .toThrow(/safetensors file ".*model\.safetensors": tensor "w": dtype F32 shape \[2, 2\] needs 16 bytes, but data holds 12/);
    expect(readdirSync(sub)).toEqual([]);
    writeSafetensors(path, { w: { dtype: 'F32', shape: [1], data: new Float32Array([5]) } });
    expect(() => writeSafetensors(path, { ok: { dtype: 'U8', shape: [1], data: new Uint8Array(1) }, bad: { dtype: 'X' as 'F32', shape: [1], data: new Uint8Array(1) } }))
      .toThrow(/tensor "bad": unknown dtype "X"/);
    expect(() => writeSafetensors(path, { w: { dtype: 'F32', shape: [-1], data: new Float32Array(0) } })).toThrow(/shape \[-1\]/);
    expect(() => writeSafetensors(path, { __metadata__: { dtype: 'U8', shape: [0], data: new Uint8Array(0) } })).toThrow(/reserved/);
    expect(readdirSync(sub)).toEqual(['model.safetensors']);
    expect([...readSafetensors(path).get('w')!.data]).toEqual([5]);
  });

  it('writes views into larger buffers by their own bytes only', () => {
    const path = tempPath();
    const big = new Float32Array([1, 2, 3, 4, 5]);
    writeSafetensors(path, { w: { dtype: 'F32', shape: [2], data: big.subarray(2, 4) } });
    expect([...readSafetensors(path).get('w')!.data]).toEqual([3, 4]);
  });
});

describe('reference fixtures', () => {
  it('opens the tiny-sd UNet and reads a tensor of the right length', () => {
    const file = SafetensorsFile.open(join(TINY_SD, 'unet', 'diffusion_pytorch_model.safetensors'));
    expect(file.metadata).toEqual({ format: 'pt' });
    expect(file.names().length).toBeGreaterThan(100);
    const e = file.entry('conv_in.weight');
    expect(e).toMatchObject({ dtype: 'F32', shape: [32, 4, 3, 3], byteLength: 32 * 4 * 3 * 3 * 4 });
    const w = file.readFloat32('conv_in.weight');
    expect(w.length).toBe(32 * 4 * 3 * 3);
    expect(w.every(Number.isFinite)).toBe(true);
    expect(w.some((x) => x !== 0)).toBe(true);
    file.close();
  });

  it('reads every reference case file', () => {
    for (const name of readdirSync(REFERENCE).filter((f) => f.endsWith('.safetensors'))) {
      const tensors = readSafetensors(join(REFERENCE, name));
      expect(tensors.size).toBeGreaterThan(0);
      for (const t of tensors.values()) expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
    }
  });
});
