// ConfigReader: every model config's fields are read one way — defaults for absent and null
// fields, bounds, and one error style, `"field" must be …, got …`.

import { describe, expect, it } from 'vitest';
import { ConfigReader } from '../../../src/models/checkpoint/config-reader.ts';
import { errorOf } from '../../support/error-of.ts';

describe('ConfigReader', () => {
  it('takes the default for an absent or null field', () => {
    const r = new ConfigReader({ a: null, b: 3 });
    expect(r.int('a', 7, 10)).toBe(7);
    expect(r.int('missing', 7, 10)).toBe(7);
    expect(r.int('b', 7, 10)).toBe(3);
    expect(r.has('a')).toBe(false);
    expect(r.optionalInt('a', 10)).toBeUndefined();
  });

  it('widens one integer to one per block and checks a list has one per block', () => {
    const r = new ConfigReader({ one: 2, list: [1, 2, 3], short: [1, 2] });
    expect(r.perBlock('one', 1, 3, 64)).toEqual([2, 2, 2]);
    expect(r.perBlock('list', 1, 3, 64)).toEqual([1, 2, 3]);
    expect(errorOf(() => r.perBlock('short', 1, 3, 64))).toBe('"short" must be an integer from 1 to 64 or a list of 3 such integers, got [1,2]');
  });

  it('words every refusal the same way, naming the field and the value', () => {
    const r = new ConfigReader({ n: 1e9, eps: 0, flag: 'yes', act: 'relu6', widths: [8, 0], types: ['A', 'B'], feature: true, mean: [0, 0] });
    expect(errorOf(() => r.int('n', 1, 64))).toBe('"n" must be an integer from 1 to 64, got 1000000000');
    expect(errorOf(() => r.number('eps', 1e-5, 0, 1))).toBe('"eps" must be a number above 0 and at most 1, got 0');
    expect(errorOf(() => r.bool('flag', false))).toBe('"flag" must be true or false, got "yes"');
    expect(errorOf(() => r.oneOf('act', ['gelu', 'silu'], 'gelu'))).toBe('"act" must be one of "gelu", "silu", got "relu6"');
    expect(errorOf(() => r.ints('widths', [8], { max: 16384, maxLength: 8 }))).toBe('"widths" must be a list of 1 to 8 integers from 1 to 16384, got [8,0]');
    expect(errorOf(() => r.types('types', ['A'], ['A']))).toBe('"types" has "B", which is not supported (supported: A)');
    expect(errorOf(() => r.only('feature', false))).toBe('"feature" true is not supported (only false)');
    expect(errorOf(() => r.optionalNumbers('mean', 4))).toBe('"mean" must be a list of 4 finite numbers, or null, got [0,0]');
  });

  it('accepts a per-block feature switch that is off everywhere', () => {
    expect(() => new ConfigReader({ only_cross_attention: [false, false] }).only('only_cross_attention', false)).not.toThrow();
    expect(() => new ConfigReader({ only_cross_attention: [false, true] }).only('only_cross_attention', false)).toThrow(/only_cross_attention/);
  });
});
