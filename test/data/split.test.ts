import { describe, expect, it } from 'vitest';
import { pickCaption } from '../../src/data/caption-variants.ts';
import { isHeldOut, stableHash } from '../../src/data/split.ts';
import { Generator } from '../../src/engine/random.ts';

describe('held-out rule', () => {
  it('hashes the same on every machine', () => {
    expect(stableHash('red apple')).toBe(1346098820);
    expect(stableHash('é')).toBe(2387039943);
    expect(isHeldOut('black heart')).toBe(true);
    expect(isHeldOut('red apple')).toBe(false);
  });

  it('holds out about the asked fraction', () => {
    const keys = Array.from({ length: 20000 }, (_, i) => `key ${i}`);
    const share = keys.filter((k) => isHeldOut(k)).length / keys.length;
    expect(share).toBeGreaterThan(0.045);
    expect(share).toBeLessThan(0.055);
    expect(keys.filter((k) => isHeldOut(k, 0)).length).toBe(0);
    expect(() => isHeldOut('a', 2)).toThrow(/fraction/);
  });
});

describe('pickCaption', () => {
  const item = { caption: 'red apple', captions: ['red apple', 'red apple, twemoji', 'apple', 'apple, twemoji'] };

  it('draws every variant, the same sequence for the same seed', () => {
    const draws = (seed: number) => {
      const rng = new Generator(seed);
      return Array.from({ length: 40 }, () => pickCaption(item, rng));
    };
    expect(new Set(draws(3))).toEqual(new Set(item.captions));
    expect(draws(3)).toEqual(draws(3));
  });

  it('returns the only caption without drawing', () => {
    const rng = new Generator(1);
    const state = rng.getState();
    expect(pickCaption({ caption: 'cat' }, rng)).toBe('cat');
    expect(rng.getState()).toEqual(state);
  });
});
