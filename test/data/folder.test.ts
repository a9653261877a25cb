import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Generator } from '../../src/engine/index.ts';
import { ShuffledBatches } from '../../src/data/batches.ts';
import { ImageFolderDataset, flipHorizontal, listImageFolder } from '../../src/data/folder.ts';
import { createImage } from '../../src/io/image.ts';
import { writePng } from '../../src/io/png.ts';

let root: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'nuri-folder-'));
  const txt = join(root, 'txt');
  mkdirSync(txt);
  await writePng(join(txt, 'red.png'), createImage(12, 8, [1, 0, 0]));
  writeFileSync(join(txt, 'red.txt'), 'a red square\n');
  await writePng(join(txt, 'blue.png'), createImage(8, 8, [0, 0, 1]));
  writeFileSync(join(txt, 'blue.txt'), 'a blue square');
  await writePng(join(txt, 'plain.png'), createImage(8, 8, [0, 1, 0]));
  writeFileSync(join(txt, 'broken.png'), 'not a png at all');
  writeFileSync(join(txt, 'broken.txt'), 'never seen');

  const jsonl = join(root, 'jsonl');
  mkdirSync(jsonl);
  await writePng(join(jsonl, 'a.png'), createImage(8, 8, [1, 1, 0]));
  await writePng(join(jsonl, 'b.png'), createImage(8, 8, [0, 1, 1]));
  writeFileSync(join(jsonl, 'metadata.jsonl'), '{"file_name": "a.png", "text": "yellow"}\n\n{"file_name": "b.png", "text": " cyan "}\n{"file_name": "gone.png", "text": "missing"}\n');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('ImageFolderDataset', () => {
  it('reads captions from name.txt, reports the unreadable image and the uncaptioned one by name', async () => {
    const warnings: string[] = [];
    const data = await ImageFolderDataset.load(join(root, 'txt'), { resolution: 4, requireCaptions: true, onWarning: (m) => warnings.push(m) });
    expect(data.items.map((i) => [i.name, i.caption])).toEqual([
      ['blue.png', 'a blue square'],
      ['plain.png', ''],
      ['red.png', 'a red square'],
    ]);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/skipped 1 unreadable image\(s\).*: broken\.png$/);
    expect(warnings[1]).toMatch(/1 image\(s\).*no caption.*plain\.png/);
    const red = data.items[2].image;
    expect([red.width, red.height]).toEqual([4, 4]); // 12×8 covered and centre-cropped
    const { pixels, captions, shape } = data.batch([2, 0]);
    expect(shape).toEqual([2, 3, 4, 4]);
    expect(captions).toEqual(['a red square', 'a blue square']);
    expect([pixels[0], pixels[16], pixels[32]]).toEqual([1, -1, -1]); // red in [-1, 1]
  });

  it('reads metadata.jsonl (file_name + text) and names missing files', async () => {
    expect(listImageFolder(join(root, 'jsonl')).entries.map((e) => e.caption)).toEqual(['yellow', 'cyan', 'missing']);
    const warnings: string[] = [];
    const data = await ImageFolderDataset.load(join(root, 'jsonl'), { resolution: 8, onWarning: (m) => warnings.push(m) });
    expect(data.items.map((i) => i.caption)).toEqual(['yellow', 'cyan']);
    expect(warnings).toEqual([expect.stringMatching(/gone\.png/)]);
  });

  it('flips left–right (seeded) and batches in a seeded shuffled order per epoch', () => {
    const image = createImage(3, 1);
    image.data.set([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect([...flipHorizontal(image).data]).toEqual([3, 2, 1, 6, 5, 4, 9, 8, 7]);

    const order = (seed: number) => {
      const rng = new Generator(seed);
      const b = new ShuffledBatches(5, 2);
      return Array.from({ length: 5 }, () => b.next(rng));
    };
    const a = order(1);
    expect(order(1)).toEqual(a);
    expect(order(2)).not.toEqual(a);
    expect(a.flat().slice(0, 5).sort()).toEqual([0, 1, 2, 3, 4]); // each epoch is a permutation
    expect(a.flat().slice(5, 10).sort()).toEqual([0, 1, 2, 3, 4]);
  });
});
