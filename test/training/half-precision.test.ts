import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SafetensorsFile, writeSafetensors } from '../../src/engine/safetensors.ts';
import { copyAsHalfPrecision, halveSafetensors } from '../../src/training/half-precision.ts';

describe('half-precision model folders', () => {
  it('stores float32 tensors as float16, keeps other dtypes, metadata and other files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-half-'));
    mkdirSync(join(dir, 'src', 'unet'), { recursive: true });
    const w = Float32Array.of(0.1, -2.5, 1000, 3e-5);
    writeSafetensors(join(dir, 'src', 'unet', 'w.safetensors'), { w: { dtype: 'F32', shape: [2, 2], data: w }, ids: { dtype: 'I64', shape: [1], data: BigInt64Array.of(7n) } }, { format: 'pt' });
    writeFileSync(join(dir, 'src', 'unet', 'config.json'), '{"a":1}');
    copyAsHalfPrecision(join(dir, 'src'), join(dir, 'out'));
    const file = SafetensorsFile.open(join(dir, 'out', 'unet', 'w.safetensors'));
    expect(file.entry('w').dtype).toBe('F16');
    expect(file.entry('ids').dtype).toBe('I64');
    expect(file.metadata.format).toBe('pt');
    const back = file.readFloat32('w');
    w.forEach((v, i) => expect(Math.abs(back[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 1e-3));
    file.close();
    expect(readFileSync(join(dir, 'out', 'unet', 'config.json'), 'utf8')).toBe('{"a":1}');
  });

  it('refuses values float16 cannot hold', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-half-'));
    writeSafetensors(join(dir, 'a.safetensors'), { big: { dtype: 'F32', shape: [1], data: Float32Array.of(1e6) } });
    expect(() => halveSafetensors(join(dir, 'a.safetensors'), join(dir, 'b.safetensors'))).toThrow(/big holds 1000000/);
  });
});
