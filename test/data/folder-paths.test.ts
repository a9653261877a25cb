// metadata.jsonl may name images in subfolders of the training folder, never outside it.

import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { listImageFolder } from '../../src/data/folder.ts';

describe('metadata.jsonl file_name', () => {
  const folder = (fileName: string) => {
    const dir = join(mkdtempSync(join(tmpdir(), 'nuri-meta-')), 'data');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    writeFileSync(join(dir, 'metadata.jsonl'), `${JSON.stringify({ file_name: 'sub/a.png', text: 'fine' })}\n${JSON.stringify({ file_name: fileName, text: 'x' })}\n`);
    return dir;
  };

  for (const name of ['../secret.png', '/etc/passwd', 'sub/../../x.png', '.']) {
    it(`refuses ${name}, naming the file and line`, () => {
      const dir = folder(name);
      expect(() => listImageFolder(dir)).toThrow(`${join(dir, 'metadata.jsonl')}:2: "file_name" ${JSON.stringify(name)} points outside ${dir}`);
    });
  }

  it('accepts a subfolder', () => {
    const dir = folder('sub/b.png');
    expect(listImageFolder(dir).entries.map((i) => i.file)).toEqual([join(dir, 'sub', 'a.png'), join(dir, 'sub', 'b.png')]);
  });
});
