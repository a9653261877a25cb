// A pipeline keeps the per-job UNet graphs it compiles (Prompt-to-Prompt, attention maps, null-text
// steps) for the next job of the same shape, but only the few most recently used: a server that
// edits at many sizes must not hold one UNet session per size for ever.

import { describe, expect, it } from 'vitest';
import { compileControlledUNet } from '../../src/pipelines/attention-control.ts';
import { AttentionStore, attentionMapGrid } from '../../src/pipelines/attention-store.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { TINY_SD } from '../fixtures.ts';

describe('kept per-job graphs', () => {
  it('reuses a shape\'s session, keeps the three most recent, and frees them with the UNet', async () => {
    const sd = StableDiffusion.load(TINY_SD);
    const compileAt = (h: number, w: number) => {
      const [mapH, mapW] = attentionMapGrid(sd.components.unet.config, h, w);
      return compileControlledUNet(sd, [1, 4, h, w], new AttentionStore({ height: mapH, width: mapW, rows: [0, 1] }));
    };
    const first = await compileAt(8, 8);
    expect((await compileAt(8, 8)).session).toBe(first.session);

    const second = await compileAt(8, 16);
    await compileAt(16, 8);
    await compileAt(16, 16); // the fourth size: 8×8, the least recently used, is released
    expect((await compileAt(8, 16)).session).toBe(second.session);
    const again = await compileAt(8, 8);
    expect(again.session).not.toBe(first.session);

    await sd.releaseUNet();
    expect((await compileAt(8, 8)).session).not.toBe(again.session);
    await sd.releaseUNet();
  });
});
