// `nuri train clip --model …/text_encoder` once listed 398 missing vision tensors: a folder
// without a vision tower is now refused in one line saying what it is.

import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadClipModel } from '../../src/models/checkpoint/components.ts';
import { TINY_SD } from '../fixtures.ts';

describe('loadClipModel', () => {
  it('refuses a text encoder folder, saying it has no vision tower', () => {
    const dir = join(TINY_SD, 'text_encoder');
    expect(() => loadClipModel(dir)).toThrow(`${dir} is not a CLIP model with a vision tower (CLIPTextModel): ${join(dir, 'config.json')} has no "vision_config"`);
  });
});
