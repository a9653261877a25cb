// A pipeline keeps the per-job UNet graphs it compiles (Prompt-to-Prompt, attention maps, null-text
// steps) for the next job of the same shape, but only the few most recently used: a server that
// edits at many sizes must not hold one UNet session per size for ever.

import { describe, expect, it } from 'vitest';
import { Parameter } from '../../src/engine/index.ts';
import { compileControlledUNet } from '../../src/pipelines/attention-control.ts';
import { compileNullTextStep } from '../../src/pipelines/inversion.ts';
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

  it("a later job's graph of the same session is the one returned: it feeds that job's trainable parameters", async () => {
    const sd = StableDiffusion.load(TINY_SD);
    const embedding = () => new Parameter('null_text_embedding', [1, ...sd.contextShape]);
    const [a, b] = [embedding(), embedding()];
    const first = await compileNullTextStep(sd, [1, 4, 8, 8], a);
    const second = await compileNullTextStep(sd, [1, 4, 8, 8], b);
    expect(second.session).toBe(first.session);
    expect(second.graph.trainable).toHaveLength(1);
    expect(second.graph.trainable[0]).toBe(b); // not the first job's embedding
    await sd.releaseUNet();
  });
});
