// Which resolution attention maps and local blend read, chosen from the cross-attention layers a
// UNet has: Stable Diffusion's 16×16 at 512 px, and the finest grid of a small UNet whose latent/4
// level has none (the first-generation default model, where local blend failed with "no
// cross-attention layer at 2×2"); then the shipped default model end to end.

import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { crossAttentionMaps } from '../../src/pipelines/attention-maps.ts';
import { attentionMapGrid, crossAttentionGrids } from '../../src/pipelines/attention-store.ts';
import { edit } from '../../src/pipelines/edit.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import type { DownBlockType, UpBlockType } from '../../src/models/checkpoint/unet-config.ts';

const cross = (n: number) => ({
  down_block_types: [...Array<DownBlockType>(n - 1).fill('CrossAttnDownBlock2D'), 'DownBlock2D' as const],
  up_block_types: ['UpBlock2D' as const, ...Array<UpBlockType>(n - 1).fill('CrossAttnUpBlock2D')],
});

describe('cross-attention grids of a UNet', () => {
  it('Stable Diffusion 1 at 512 px: 64, 32, 16 in down/up, 8 in the mid block; maps at 16×16 as the reference', () => {
    const sd1 = cross(4);
    expect(crossAttentionGrids(sd1, 64, 64)).toEqual([[64, 64], [32, 32], [16, 16]]);
    expect(crossAttentionGrids(sd1, 64, 64, ['mid'])).toEqual([[8, 8]]);
    expect(attentionMapGrid(sd1, 64, 64)).toEqual([16, 16]);
    // 768×512: the grids follow each side.
    expect(attentionMapGrid(sd1, 96, 64)).toEqual([24, 16]);
  });

  it('small UNets: the finest grid when none is 16 wide, the coarsest that is otherwise', () => {
    const shipped = cross(3); // models/default: 8×8 latents, cross-attention at 8×8 and 4×4
    expect(crossAttentionGrids(shipped, 8, 8)).toEqual([[8, 8], [4, 4]]);
    expect(attentionMapGrid(shipped, 8, 8)).toEqual([8, 8]);
    expect(attentionMapGrid(shipped, 16, 16)).toEqual([16, 16]);
    expect(attentionMapGrid(shipped, 32, 32)).toEqual([16, 16]);
    // Odd sizes halve as a stride-2 convolution does, rounding up.
    expect(crossAttentionGrids(shipped, 10, 6)).toEqual([[10, 6], [5, 3]]);
    // Cross-attention only in the coarse up block.
    const coarse = { down_block_types: ['DownBlock2D', 'DownBlock2D'] as DownBlockType[], up_block_types: ['CrossAttnUpBlock2D', 'UpBlock2D'] as UpBlockType[] };
    expect(crossAttentionGrids(coarse, 16, 16)).toEqual([[8, 8]]);
    expect(attentionMapGrid(coarse, 16, 16)).toEqual([8, 8]);
    const none = { down_block_types: ['DownBlock2D'] as DownBlockType[], up_block_types: ['UpBlock2D'] as UpBlockType[] };
    expect(() => attentionMapGrid(none, 16, 16)).toThrow(/no cross-attention layers in down\/up/);
  });
});

describe('on the default model (16×16 latents, cross-attention at 16×16 and 8×8)', () => {
  let sd: StableDiffusion;
  beforeAll(() => {
    sd = StableDiffusion.load(join(import.meta.dirname, '..', '..', 'models', 'default'));
  });

  it('heat maps come at the latents\' 16×16 and name the grid when asked for one it lacks', async () => {
    const result = await crossAttentionMaps(sd, { prompt: 'red heart', steps: 2, seed: 1 });
    expect([result.mapHeight, result.mapWidth]).toEqual([16, 16]);
    expect(result.tokens.map((t) => t.token)).toEqual(['red', 'heart']);
    for (const { map } of result.tokens) {
      expect(map).toHaveLength(256);
      expect(map.every((v) => Number.isFinite(v) && v >= 0)).toBe(true);
    }
    await expect(crossAttentionMaps(sd, { prompt: 'red heart', steps: 2, mapDownscale: 4 })).rejects.toThrow(/no cross-attention layers at 1\/4 .*16×16, 8×8/);
  });

  it('local blend works at the default size: outside the word\'s mask the edit keeps the source', async () => {
    const keptCells = async (threshold: number) => {
      const result = await edit(sd, { source: 'cat face', target: 'dog face', localBlend: { words: ['cat'], threshold }, steps: 3, seed: 1 });
      const [, c, h, w] = result.shape;
      const item = c * h * w;
      let kept = 0;
      for (let p = 0; p < h * w; p++) {
        let same = true;
        for (let ch = 0; ch < c; ch++) same &&= result.latents[ch * h * w + p] === result.latents[item + ch * h * w + p];
        if (same) kept++;
      }
      return kept;
    };
    // Nothing exceeds its own peak: a threshold of 1 keeps the source everywhere.
    expect(await keptCells(1)).toBe(256);
    // At a threshold inside the maps' range the mask is partial: some of the 16×16 cells are reset
    // to the source, not all.
    const kept = await keptCells(0.9);
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(256);
  });
});
