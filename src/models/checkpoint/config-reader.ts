// The one way a config's fields are read: by diffusers' / transformers' own snake_case names, with
// the library's default for an absent field (null counts as absent: diffusers writes null for
// "unset"), every size bounded, and one error style — `"field" must be …, got …` — that the loader
// prefixes with the file's path (config-file.ts `inFile`).

import { boundedInt, boundedNumber } from './bounds.ts';
import type { ConfigJson } from './config-file.ts';

export class ConfigReader {
  constructor(readonly json: ConfigJson) {
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('the config must be a JSON object');
  }

  /** The field's value, undefined when absent or null. */
  raw(field: string): unknown {
    const value = this.json[field];
    return value === null ? undefined : value;
  }

  has(field: string): boolean {
    return this.raw(field) !== undefined;
  }

  fail(field: string, want: string): never {
    throw new Error(`"${field}" must be ${want}, got ${JSON.stringify(this.json[field])}`);
  }

  /** An integer from `min` to `max`. */
  int(field: string, fallback: number, max: number, min = 1): number {
    return boundedInt(this.raw(field) ?? fallback, field, max, min);
  }

  /** An integer from `min` to `max`, or undefined when absent. */
  optionalInt(field: string, max: number, min = 1): number | undefined {
    return this.has(field) ? this.int(field, 0, max, min) : undefined;
  }

  /** A finite number in (low, high], or [low, high] with `lowIncluded`: for ε and scale factors. */
  number(field: string, fallback: number, low: number, high: number, lowIncluded = false): number {
    return boundedNumber(this.raw(field) ?? fallback, field, low, high, lowIncluded);
  }

  /** Any finite number. */
  finite(field: string, fallback: number): number {
    const v = this.raw(field) ?? fallback;
    return typeof v === 'number' && Number.isFinite(v) ? v : this.fail(field, 'a finite number');
  }

  bool(field: string, fallback: boolean): boolean {
    const v = this.raw(field) ?? fallback;
    return typeof v === 'boolean' ? v : this.fail(field, 'true or false');
  }

  oneOf<const T extends string>(field: string, allowed: readonly T[], fallback: T): T {
    const v = this.raw(field) ?? fallback;
    return allowed.includes(v as T) ? (v as T) : this.fail(field, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
  }

  /** A list of 1 to `maxLength` integers, each from `min` to `max`. */
  ints(field: string, fallback: readonly number[], o: { max: number; min?: number; maxLength: number }): number[] {
    const v = this.raw(field) ?? fallback;
    const min = o.min ?? 1;
    if (!Array.isArray(v) || !v.length || v.length > o.maxLength || v.some((x) => !Number.isInteger(x) || x < min || x > o.max)) {
      this.fail(field, `a list of 1 to ${o.maxLength} integers from ${min} to ${o.max}`);
    }
    return [...(v as number[])];
  }

  /** One integer for every block, or a list of one per block, each from 1 to `max`. */
  perBlock(field: string, fallback: number | readonly number[], blocks: number, max: number): number[] {
    const v = this.raw(field) ?? fallback;
    const list = typeof v === 'number' ? new Array<number>(blocks).fill(v) : v;
    if (!Array.isArray(list) || list.length !== blocks || list.some((x) => !Number.isInteger(x) || x < 1 || x > max)) {
      this.fail(field, `an integer from 1 to ${max} or a list of ${blocks} such integers`);
    }
    return [...(list as number[])];
  }

  /** A list of finite numbers of `length` entries, or undefined when absent. */
  optionalNumbers(field: string, length: number): number[] | undefined {
    const v = this.raw(field);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.length !== length || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      this.fail(field, `a list of ${length} finite numbers, or null`);
    }
    return [...(v as number[])];
  }

  /** A list of strings, each one of `allowed`. */
  types<const T extends string>(field: string, fallback: readonly T[], allowed: readonly T[]): T[] {
    const v = this.raw(field) ?? fallback;
    if (!Array.isArray(v) || !v.length) this.fail(field, 'a non-empty list');
    const other = v.find((t) => !allowed.includes(t as T));
    if (other !== undefined) throw new Error(`"${field}" has ${JSON.stringify(other)}, which is not supported (supported: ${allowed.join(', ')})`);
    return [...(v as T[])];
  }

  /**
   * A field that switches on a feature Nuri lacks must be absent or `off` (in a per-block list:
   * `off` everywhere).
   */
  only(field: string, off: unknown): void {
    const v = this.raw(field);
    const offEverywhere = Array.isArray(v) && v.every((x) => x === off);
    if (v !== undefined && v !== off && !offEverywhere) throw new Error(`"${field}" ${JSON.stringify(v)} is not supported (only ${JSON.stringify(off)})`);
  }
}
