// Symbolic size arithmetic: what a UNet or VAE does to a size must stay exact and comparable.

import { describe, expect, it } from 'vitest';
import {
  type Dim, SymDim, broadcastShapes, convOutDim, dimAdd, dimDiv, dimEquals, dimMul, dimQuotient, product, shapeToString, sym,
} from '../../src/engine/dims.ts';

const key = (d: Dim | undefined) => (d === undefined ? 'undefined' : typeof d === 'number' ? String(d) : d.key);

describe('symbolic dims', () => {
  const [B, H, W] = [sym('B'), sym('H'), sym('W')];

  it('canonical keys make equal sizes compare equal', () => {
    expect(dimEquals(dimMul(H, W), dimMul(W, H))).toBe(true);
    expect(dimEquals(dimDiv(dimMul(H, 2), 2), H)).toBe(true);
    expect(key(new SymDim(['H'], 4, 8, 3))).toBe('1/2*H+3');
    expect(dimEquals(H, W)).toBe(false);
    expect(() => sym('2x')).toThrow(/identifiers/);
  });

  it('add, multiply, divide', () => {
    expect(key(dimAdd(H, -1))).toBe('H-1');
    expect(key(dimAdd(dimAdd(H, -1), 1))).toBe('H');
    expect(key(dimMul(dimAdd(dimDiv(H, 2), 1), 2))).toBe('H+2');
    expect(dimMul(H, 0)).toBe(0);
    expect(key(dimMul(dimDiv(H, 4), dimMul(W, 3)))).toBe('3/4*H*W');
    expect(() => dimMul(dimAdd(H, 1), W)).toThrow(/offsets/);
    expect(() => dimDiv(7, 2)).toThrow(/not divisible/);
    expect(() => dimDiv(dimAdd(H, 1), 2)).toThrow(/not divisible/);
  });

  it('quotients for reshape inference', () => {
    const all = product([B, 4, dimDiv(H, 2), dimDiv(W, 2)]); // B·H·W
    expect(key(all)).toBe('B*H*W');
    expect(key(dimQuotient(all, dimMul(B, 4)))).toBe('1/4*H*W');
    expect(key(dimQuotient(dimMul(H, 6), 3))).toBe('2*H');
    expect(key(dimQuotient(dimMul(H, W), dimMul(W, H)))).toBe('1');
    expect(dimQuotient(H, W)).toBeUndefined();
    expect(dimQuotient(7, 2)).toBeUndefined();
  });

  it('convolution output sizes', () => {
    expect(convOutDim(8, 3, 2, 2, 1)).toBe(4);
    expect(convOutDim(7, 3, 2, 0, 1)).toBe(3);
    expect(convOutDim(7, 3, 1, 2, 2)).toBe(5);
    expect(key(convOutDim(H, 3, 2, 2, 1))).toBe('1/2*H'); // stride-2 3×3, padding 1
    expect(key(convOutDim(H, 3, 1, 0, 1))).toBe('H-2');
    expect(key(convOutDim(H, 1, 2, 0, 1))).toBe('1/2*H');
    expect(key(convOutDim(dimDiv(H, 2), 3, 2, 2, 1))).toBe('1/4*H');
  });

  it('broadcasting names both shapes when it fails', () => {
    expect(broadcastShapes([B, 1, 3], [4, 1])).toEqual([B, 4, 3]);
    expect(shapeToString(broadcastShapes([1, H], [B, 1]))).toBe('[B, H]');
    expect(() => broadcastShapes([B, 3], [H, 3], 'Add')).toThrow('Add: shapes [B, 3] and [H, 3] do not broadcast');
  });
});
