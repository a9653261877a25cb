import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { emojiTensorCache } from '../../src/data/emoji-cache.ts';
import { loadEmojiDataset } from '../../src/data/emoji-dataset.ts';
import { type EmojiRecord, emojiRecords, readEmojiImage } from '../../src/data/emoji.ts';
import type { ImageFolderDataset } from '../../src/data/folder.ts';
import { Generator } from '../../src/engine/random.ts';
import { imageToTensor } from '../../src/io/image.ts';

const dir = mkdtempSync(join(tmpdir(), 'nuri-data-emoji-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const train = emojiRecords({ split: 'train' });
const heldOut = emojiRecords({ split: 'heldout' });
const byId = (records: readonly EmojiRecord[], id: string) => {
  const found = records.find((r) => r.id === id);
  if (!found) throw new Error(`no record ${id}`);
  return found;
};

describe('emoji records', () => {
  it('has more than 1000 images per style, each file present', () => {
    for (const style of ['twemoji', 'noto'] as const) {
      expect(train.filter((r) => r.style === style).length).toBeGreaterThan(1000);
    }
    expect(new Set(train.map((r) => r.id)).size).toBe(train.length);
  });

  it('captions are lower-case, trimmed and non-empty, the name first', () => {
    for (const r of [...train, ...heldOut]) {
      expect(r.captions.length).toBeGreaterThan(0);
      for (const c of r.captions) {
        expect(c).toBe(c.toLowerCase());
        expect(c).toBe(c.trim());
        expect(c.length).toBeGreaterThan(0);
      }
      expect(r.captions[0].startsWith(r.name)).toBe(true);
    }
    const apple = byId(train, 'twemoji/1f34e');
    expect(apple.captions).toEqual(['red apple', 'red apple, twemoji', 'apple', 'apple, twemoji']);
    expect(apple.category).toBe('Food & Drink');
    expect(apple.subcategory).toBe('food-fruit');
  });

  it('names skin-tone variants, one and two tones', () => {
    const thumbs = byId(train, 'noto/1f44d-1f3fd');
    expect(thumbs.skinTone).toBe('medium skin tone');
    expect(thumbs.captions[0]).toBe('thumbs up sign, medium skin tone');
    expect(thumbs.captions).toContain('thumbsup, medium skin tone, noto');
    const pair = byId(train, 'twemoji/1f9d1-1f3fb-200d-1f91d-200d-1f9d1-1f3ff');
    expect(pair.skinTone).toBe('light skin tone, dark skin tone');
    const without = emojiRecords({ styles: ['noto'], includeSkinTones: false });
    expect(without.some((r) => r.skinTone)).toBe(false);
    expect(without.length).toBeLessThan(train.filter((r) => r.style === 'noto').length);
  });

  it('puts the style word in every caption, none, or half', () => {
    const filter = (r: EmojiRecord) => r.subcategory === 'food-fruit';
    const always = emojiRecords({ styleWord: 'always', filter });
    expect(always.every((r) => r.captions.every((c) => c.endsWith(`, ${r.style}`)))).toBe(true);
    const never = emojiRecords({ styleWord: 'never', filter });
    expect(never.every((r) => r.captions.every((c) => !c.endsWith(', twemoji') && !c.endsWith(', noto')))).toBe(true);
    expect(byId(never, 'noto/1f34e').captions).toEqual(['red apple', 'apple']);
  });

  it('drops colour words the images do not show from legacy names', () => {
    const heart = byId(train, 'twemoji/2764-fe0f');
    expect(heart.captions.filter((_, i) => i % 2 === 0)).toEqual(['heavy heart', 'heart']);
    expect(byId(train, 'noto/2b50').captions[0]).toBe('medium star');
    expect(byId(train, 'noto/1f499').captions[0]).toBe('blue heart');
  });
});

describe('held-out split', () => {
  it('holds out about 5% of base names, disjoint from training by name and caption', () => {
    const trainNames = new Set(train.map((r) => r.name));
    const heldNames = new Set(heldOut.map((r) => r.name));
    expect([...heldNames].filter((n) => trainNames.has(n))).toEqual([]);
    const fraction = heldNames.size / (heldNames.size + trainNames.size);
    expect(fraction).toBeGreaterThan(0.04);
    expect(fraction).toBeLessThan(0.06);
    const trainCaptions = new Set(train.flatMap((r) => r.captions));
    expect(heldOut.flatMap((r) => r.captions).filter((c) => trainCaptions.has(c))).toEqual([]);
    expect(heldOut.every((r) => r.split === 'heldout') && train.every((r) => r.split === 'train')).toBe(true);
  });

  it('is the same on every run: fixed names fall on fixed sides, in both styles and all skin tones', () => {
    expect(heldNames()).toContain('black heart');
    expect(heldNames()).toContain('large green circle');
    for (const name of ['red apple', 'blue heart', 'green apple', 'thumbs up sign']) {
      expect(train.filter((r) => r.name === name).length).toBeGreaterThan(0);
    }
    expect(heldOut.filter((r) => r.name === 'black heart').map((r) => r.style).sort()).toEqual(['noto', 'twemoji']);
    expect(emojiRecords({ split: 'heldout' }).map((r) => r.id)).toEqual(heldOut.map((r) => r.id));
  });
});

function heldNames(): string[] {
  return [...new Set(heldOut.map((r) => r.name))];
}

describe('emoji images', () => {
  it('composites transparent pixels on white', async () => {
    const apple = byId(train, 'twemoji/1f34e');
    const { data } = await sharp(apple.path).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    expect(data[3]).toBe(0); // the corner pixel is transparent in the PNG
    const image = await readEmojiImage(apple);
    const plane = image.width * image.height;
    expect([image.data[0], image.data[plane], image.data[2 * plane]]).toEqual([1, 1, 1]);
  });

  it('serves a folder-shaped data set at the asked size, drawing caption variants from the rng', async () => {
    const dataset = await loadEmojiDataset({ size: 32, styles: ['noto'], filter: (r) => r.subcategory === 'food-fruit', cacheDir: dir });
    const asFolder: ImageFolderDataset = dataset; // the training tasks take either
    expect(asFolder.length).toBe(dataset.items.length);
    expect(dataset.resolution).toBe(32);
    const index = dataset.items.findIndex((item) => item.record.id === 'noto/1f34e');
    const item = dataset.items[index];
    expect([item.image.width, item.image.height]).toEqual([32, 32]);
    expect(item.image.data).toEqual((await readEmojiImage(item.record, 32)).data);
    expect(item.caption).toBe('red apple');

    const fixed = dataset.batch([index, index]);
    expect(fixed.captions).toEqual(['red apple', 'red apple']);
    expect(fixed.shape).toEqual([2, 3, 32, 32]);
    const draw = (seed: number) => dataset.batch(Array(40).fill(index), new Generator(seed)).captions;
    expect(new Set(draw(1))).toEqual(new Set(item.captions));
    expect(draw(1)).toEqual(draw(1));
    expect(() => dataset.batch([dataset.length])).toThrow(/no item/);
  });
});

describe('tensor cache', () => {
  it('decodes once, then loads the same values; grows for records it lacks', async () => {
    const hearts = (r: EmojiRecord) => r.subcategory === 'heart' && r.style === 'twemoji';
    const first = await emojiTensorCache({ size: 32, filter: hearts, cacheDir: dir });
    const n = first.ids.length;
    expect(n).toBeGreaterThan(10);
    expect(first.decoded).toBe(n);
    expect(first.shape).toEqual([n, 3, 32, 32]);
    expect(first.captions).toEqual(first.records.map((r) => r.captions));

    const direct = imageToTensor(await Promise.all(first.records.map((r) => readEmojiImage(r, 32))), '-1..1');
    expect(first.images).toEqual(direct);

    const again = await emojiTensorCache({ size: 32, filter: hearts, cacheDir: dir });
    expect(again.decoded).toBe(0);
    expect(again.images).toEqual(first.images);

    const both = await emojiTensorCache({ size: 32, filter: (r) => r.subcategory === 'heart', cacheDir: dir });
    expect(both.decoded).toBe(both.ids.length - n);
    const row = both.ids.indexOf(first.ids[3]);
    const size = 3 * 32 * 32;
    expect(both.images.subarray(row * size, (row + 1) * size)).toEqual(first.images.subarray(3 * size, 4 * size));
  });
});
