// The default model's card states its training time from the recipe's cost table; a UNet started
// from another recipe's (training.json's unetFrom) counts that UNet's time too, and says so.
import { describe, expect, it } from 'vitest';
import { STARTED_FROM_COST, modelCard, unetLineageSeconds } from '../../src/training/default-model.ts';

describe("the default model's card", () => {
  const costs = { vae: 5460, latents: 26, clip: 2130, base: 1, unet: 4770 };

  it('gives each stage in minutes and the total', () => {
    const card = modelCard(costs, 64, { guidance: 5 });
    expect(card).toMatch(/VAE 91 min,\s+CLIP 36 min, UNet 80 min; 206 min in total/);
    expect(card).toContain('draws 64×64 emoji-like pictures');
    expect(card).toContain('guidance 5');
  });

  it("adds the UNet it started from to the UNet's time and the total", () => {
    const card = modelCard({ ...costs, [STARTED_FROM_COST]: 45900 }, 64, undefined);
    expect(card).toMatch(/UNet 845 min \(765 min of them the UNet it started from\); 971 min in total/);
  });

  it('counts a chain of started-from runs: the next run inherits this one\'s own and inherited UNet time', () => {
    expect(unetLineageSeconds({ ...costs, [STARTED_FROM_COST]: 45900 })).toBe(4770 + 45900);
    expect(unetLineageSeconds(costs)).toBe(4770);
    expect(unetLineageSeconds({ vae: 10 })).toBe(0);
  });
});
