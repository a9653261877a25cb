// The identity metric itself: real emoji find themselves, noise and flat colour find nothing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmojiRecord } from '../../src/data/emoji.ts';
import { Generator } from '../../src/engine/random.ts';
import type { RgbImage } from '../../src/io/image.ts';
import { type IdentityGallery, emojiGallery, identityAgreement, identityNames, nearestImages, otherStyleReference, rankBands } from '../../src/training/emoji-identity.ts';

const SIZE = 32;
const cacheDir = mkdtempSync(join(tmpdir(), 'nuri-identity-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));
// Two subcategories of look-alikes (round yellow faces, fruit): a few dozen emoji in both styles.
const filter = (r: EmojiRecord) => r.subcategory === 'face-smiling' || r.subcategory === 'food-fruit';

let gallery: IdentityGallery;
beforeAll(async () => {
  gallery = await emojiGallery(SIZE, { filter, cacheDir });
}, 60_000);

const image = (data: Float32Array): RgbImage => ({ width: SIZE, height: SIZE, channels: 3, data });

describe('emoji identity by nearest real images', () => {
  it('holds both styles of every emoji of both splits, labelled by emoji', () => {
    expect(gallery.images.length).toBeGreaterThan(30);
    const perKey = new Map<string, number>();
    for (const key of gallery.keys) perKey.set(key, (perKey.get(key) ?? 0) + 1);
    expect([...perKey.values()].filter((n) => n === 2).length).toBeGreaterThan(perKey.size / 2);
  });

  it('scores real images, even lightly perturbed, at 100% and noise or flat colour near 0%', () => {
    const rng = new Generator(0);
    const real = gallery.images.map((g) => {
      const jitter = rng.randn(g.data.length);
      return image(g.data.map((v, i) => Math.min(1, Math.max(0, v + 0.05 * jitter[i]))));
    });
    const own = identityAgreement(gallery, real, gallery.keys);
    expect(own.rate).toBe(1);
    // The image itself is its nearest neighbour.
    own.nearest.forEach((indices, i) => expect(indices[0]).toBe(i));
    expect(own.ranks.every((r) => r === 0)).toBe(true);

    const noise = gallery.images.map(() => image(rng.rand(3 * SIZE * SIZE)));
    expect(identityAgreement(gallery, noise, gallery.keys).rate).toBeLessThan(0.2);
    const grey = gallery.images.map(() => image(new Float32Array(3 * SIZE * SIZE).fill(0.6)));
    expect(identityAgreement(gallery, grey, gallery.keys).rate).toBeLessThan(0.2);
  });

  it('left out of the gallery, a real image can only match its other style', async () => {
    const own = identityAgreement(gallery, gallery.images, gallery.keys, 1, gallery.keys.map((_, i) => i));
    own.nearest.forEach((indices, i) => expect(indices[0]).not.toBe(i));
    const names = await identityNames(SIZE, 'train', 10_000, { filter, cacheDir });
    const reference = otherStyleReference(gallery, names);
    // Only names drawn in both styles count, and some but not all find their other style.
    expect(reference.total).toBeGreaterThan(names.length / 2);
    expect(reference.total).toBeLessThanOrEqual(names.length);
    expect(reference.rate).toBeGreaterThan(0);
    expect(reference.rate).toBeLessThan(1);
  });

  it("ranks the own emoji's nearest image among the gallery, and counts the ranks in bands", () => {
    const query = gallery.images[3];
    const key = gallery.keys[3];
    const d = gallery.images.map((g) => g.data.reduce((a, v, i) => a + (v - query.data[i]) ** 2, 0));
    // Left out of the gallery, the image is ranked by its other style (when it has one): how many are nearer.
    const others = gallery.keys.map((k, j) => (k === key && j !== 3 ? d[j] : Infinity));
    const want = Math.min(...others) === Infinity ? Infinity : d.filter((x, j) => j !== 3 && x < Math.min(...others)).length;
    expect(identityAgreement(gallery, [query], [key], 5, [3]).ranks).toEqual([want]);
    // A query asking for another emoji ranks that emoji's nearest image.
    const other = gallery.keys.find((k) => k !== key)!;
    const nearestOther = Math.min(...gallery.keys.map((k, j) => (k === other ? d[j] : Infinity)));
    expect(identityAgreement(gallery, [query], [other]).ranks).toEqual([d.filter((x) => x < nearestOther).length]);

    expect(rankBands([0, 4, 5, 19, 20, 199, 200, Infinity])).toEqual({ '1–5': 2, '6–20': 2, '21–50': 1, '51–200': 1, 'beyond 200': 2 });
  });

  it('returns the k nearest, nearest first', () => {
    const query = gallery.images[3];
    const five = nearestImages(gallery, query, 5);
    expect(five).toHaveLength(5);
    expect(five[0]).toBe(3);
    const distance = (n: number) => gallery.images[n].data.reduce((a, v, i) => a + (v - query.data[i]) ** 2, 0);
    for (let i = 1; i < 5; i++) expect(distance(five[i])).toBeGreaterThanOrEqual(distance(five[i - 1]));
    const all = gallery.images.map((_, n) => distance(n)).sort((a, b) => a - b);
    expect(distance(five[4])).toBeCloseTo(all[4], 5);
  });

  it('picks distinct names evenly over a split, each with its emoji in the gallery', async () => {
    const names = await identityNames(SIZE, 'train', 10, { filter, cacheDir });
    expect(names).toHaveLength(10);
    expect(new Set(names.map((n) => n.key)).size).toBe(10);
    for (const { key, name } of names) {
      expect(gallery.keys).toContain(key);
      expect(name).toMatch(/^[a-z]/);
    }
    // Asked for more than there are: every training emoji once, the smiling faces among them.
    const all = await identityNames(SIZE, 'train', 10_000, { filter, cacheDir });
    expect(new Set(all.map((n) => n.key)).size).toBe(all.length);
    expect(all.length).toBeGreaterThan(10);
    expect(all.map((n) => n.name)).toContain('grinning face');
    expect(all.map((n) => n.key)).toEqual(expect.arrayContaining(names.map((n) => n.key)));
  });

  it('refuses a wrong size, a count mismatch and an emoji the gallery lacks', () => {
    const small = image(new Float32Array(3 * 16 * 16));
    expect(() => identityAgreement(gallery, [{ ...small, width: 16, height: 16 }], [gallery.keys[0]])).toThrow(/32×32 images, got a 16×16/);
    expect(() => identityAgreement(gallery, [gallery.images[0]], [])).toThrow(/1 images for 0/);
    expect(() => identityAgreement(gallery, [gallery.images[0]], ['FFFFF'])).toThrow(/no image of emoji FFFFF/);
  });
});
