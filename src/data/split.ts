// Held-out splits that never move: whether a key (a caption, an emoji name) is held out depends
// only on a hash of the key itself, not on the order or count of the other keys, so adding or
// removing data never moves a key across the split, and every run and machine agrees.

/** Fraction of keys held out for evaluation unless a caller says otherwise. */
export const HELD_OUT_FRACTION = 0.05;

/**
 * A stable 32-bit hash of a string: FNV-1a over its UTF-8 bytes, then murmur3's finaliser so the
 * high bits (which `isHeldOut` compares) are well mixed. `salt` gives independent hash families.
 */
export function stableHash(text: string, salt = 0): number {
  let h = (0x811c9dc5 ^ salt) >>> 0;
  for (const byte of new TextEncoder().encode(text)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** True for about `fraction` of all keys, always the same ones. */
export function isHeldOut(key: string, fraction = HELD_OUT_FRACTION): boolean {
  if (!(fraction >= 0 && fraction <= 1)) throw new Error(`held-out fraction must be in [0, 1], got ${fraction}`);
  return stableHash(key) < fraction * 2 ** 32;
}
