// What the Prompt-to-Prompt controller promises, on the tiny fixture model (128×128, 3 steps): full
// replacement hands the edit the source's attention maps exactly; re-weighting by 1 changes
// nothing; a local-blend mask of zeros keeps the source.

import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, slice } from '../../src/engine/index.ts';
import type { AttentionCall, AttentionLayer } from '../../src/models/unet.ts';
import { type AttentionObserver, type ControlledHook, PromptToPromptControl, compileControlledUNet } from '../../src/pipelines/attention-control.ts';
import { AttentionStore } from '../../src/pipelines/attention-store.ts';
import { edit } from '../../src/pipelines/edit.ts';
import { BatchGenerator, denoise, generate } from '../../src/pipelines/generate.ts';
import { LocalBlend, blendLatents } from '../../src/pipelines/local-blend.ts';
import { planPromptToPrompt, promptToPromptFeeds } from '../../src/pipelines/prompt-to-prompt.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { createScheduler } from '../../src/schedulers/index.ts';
import { TINY_SD } from '../fixtures.ts';

// 128 px: at 64 px the tiny UNet's deepest maps are 1×1, where GroupNorm amplifies rounding noise.
const SIZE = { width: 128, height: 128, steps: 3, seed: 11 };
const LATENT = [2, 4, 16, 16] as const;
const ITEM = 4 * 16 * 16;

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Every layer's conditional pair [source, edit] of probabilities, as outputs maps_<layer>. */
class EveryLayer implements AttentionObserver {
  readonly calls: AttentionCall[] = [];
  private readonly maps: Tensor[] = [];
  record(call: AttentionCall, probs: Tensor): void {
    this.calls.push(call);
    this.maps.push(slice(probs, 0, 2, 4));
  }
  outputs(): Record<string, Tensor> {
    return Object.fromEntries(this.maps.map((m, i) => [`maps_${i}`, m]));
  }
}

describe('Prompt-to-Prompt controller', () => {
  let sd: StableDiffusion;
  beforeAll(() => {
    sd = StableDiffusion.load(TINY_SD);
  });

  /** Runs a word swap with the given fractions; per step, the largest source/edit difference over all layers' maps. */
  async function swapMapDifferences(crossReplace: number, selfReplace: number) {
    const plan = planPromptToPrompt(sd.components.tokenizer, { source: 'a cat riding a bike', target: 'a dog riding a bike', crossReplace, selfReplace }, SIZE.steps);
    const observer = new EveryLayer();
    const control = new PromptToPromptControl({ batch: 4, tokens: 77, observers: [observer] });
    const unet = await compileControlledUNet(sd, [4, ...LATENT.slice(1)] as [number, number, number, number], control);
    const scheduler = createScheduler('ddim', sd.components.schedulerConfig);
    scheduler.setTimesteps(SIZE.steps);
    const rng = new BatchGenerator([SIZE.seed, SIZE.seed]);
    const differences: number[] = [];
    await denoise(sd, unet, {
      scheduler,
      timesteps: scheduler.timesteps,
      latents: rng.randn(2 * ITEM),
      shape: LATENT,
      cond: await sd.encodePrompts([plan.source, plan.target]),
      uncond: await sd.encodePrompts(['', '']),
      guidance: 7.5,
      rng,
      feeds: (i) => promptToPromptFeeds(plan, i),
      onOutputs: (_, outputs) => {
        let worst = 0;
        observer.calls.forEach((_, i) => {
          const maps = outputs[`maps_${i}`].data as Float32Array;
          const half = maps.length / 2;
          worst = Math.max(worst, maxAbsDiff(maps.subarray(0, half), maps.subarray(half)));
        });
        differences.push(worst);
      },
    });
    return { differences, calls: observer.calls };
  }

  it('a word swap with cross- and self-replacement on every step gives the edit exactly the source maps', async () => {
    const { differences, calls } = await swapMapDifferences(1, 1);
    expect(calls.filter((c) => c.isCross)).toHaveLength(calls.length / 2);
    expect(differences).toEqual([0, 0, 0]);
    // Without replacement the two prompts attend differently.
    const free = await swapMapDifferences(0, 0);
    expect(Math.min(...free.differences)).toBeGreaterThan(1e-4);
  });

  it('re-weighting by 1 is the identity: the edit row equals the source row and plain generation', async () => {
    const source = 'a smiling cat riding a bike';
    const result = await edit(sd, { ...SIZE, source, reweight: { smiling: 1 } });
    const half = result.latents.length / 2;
    expect(maxAbsDiff(result.latents.subarray(0, half), result.latents.subarray(half))).toBeLessThan(1e-6);
    const plain = await generate(sd, { ...SIZE, prompts: [source] });
    expect(maxAbsDiff(result.latents.subarray(0, half), plain.latents)).toBeLessThan(1e-4); // plain ops vs the fused attention kernel
    const boosted = await edit(sd, { ...SIZE, source, reweight: { smiling: 5 } });
    expect(maxAbsDiff(boosted.latents.subarray(0, half), boosted.latents.subarray(half))).toBeGreaterThan(1e-3);
  });

  it("records the edit's heat maps: one per target token, following the re-weighting", async () => {
    const source = 'a smiling cat riding a bike';
    const sum = (m: Float32Array) => m.reduce((a, b) => a + b, 0);
    const plain = await edit(sd, { ...SIZE, source, reweight: { smiling: 1 }, attentionMaps: true });
    const boosted = await edit(sd, { ...SIZE, source, reweight: { smiling: 5 }, attentionMaps: true });
    const maps = plain.attention!;
    expect(maps.tokens.map((t) => t.token)).toEqual(['a', 'smiling', 'cat', 'riding', 'a', 'bike']);
    for (const t of maps.tokens) expect(t.map).toHaveLength(maps.mapHeight * maps.mapWidth);
    const smiling = (r: typeof plain) => sum(r.attention!.tokens[1].map);
    expect(smiling(boosted)).toBeGreaterThan(2 * smiling(plain));
    expect(sum(boosted.attention!.tokens[2].map)).toBeLessThan(2 * sum(maps.tokens[2].map));
    expect(await edit(sd, { ...SIZE, source }).then((r) => r.attention)).toBeUndefined();
  });

  it('a local-blend mask of zeros returns the source latents', async () => {
    const latents = Float32Array.from({ length: 2 * ITEM }, (_, i) => Math.sin(i));
    const blended = blendLatents(latents, LATENT, new Uint8Array(16 * 16));
    expect(Array.from(blended.subarray(ITEM))).toEqual(Array.from(latents.subarray(0, ITEM)));
    expect(Array.from(blended.subarray(0, ITEM))).toEqual(Array.from(latents.subarray(0, ITEM)));
    // In the pipeline: no map can exceed its own peak, so a threshold of 1 masks nothing.
    const result = await edit(sd, { ...SIZE, source: 'a cat riding a bike', target: 'a dog riding a bike', localBlend: { words: ['cat', 'dog'], threshold: 1 } });
    const half = result.latents.length / 2;
    expect(maxAbsDiff(result.latents.subarray(0, half), result.latents.subarray(half))).toBe(0);
  });

  it('materialises attention only where it edits or records: other layers keep the fused kernel', () => {
    // Traces the UNet at 256 px (32×32 latents): the first level's self-attention has 1024 queries.
    const offered = (hook: ControlledHook) => {
      const seen: [boolean, number][] = [];
      const spy = { wants: (l: AttentionLayer) => hook.wants!(l), attention: (c: AttentionCall) => (seen.push([c.isCross, Number(c.height) * Number(c.width)]), hook.attention(c)) };
      sd.components.unet.forward(Tensor.input('sample', [4, 4, 32, 32]), Tensor.input('timestep', [4]), Tensor.input('encoder_hidden_states', [4, 77, 32]), { attentionHook: spy });
      return seen;
    };
    const edit = offered(new PromptToPromptControl({ batch: 4, tokens: 77 }));
    // 16 transformer blocks; the 5 of the first level (2 down, 3 up) have 32×32 = 1024 queries.
    expect(edit.filter(([cross]) => cross)).toHaveLength(16);
    expect(edit.filter(([cross]) => !cross)).toHaveLength(11);
    expect(edit.some(([cross, q]) => !cross && q > 256)).toBe(false);
    const store = offered(new AttentionStore({ height: 8, width: 8, rows: [2, 4] }));
    expect(store.length).toBeGreaterThan(0);
    expect(store.every(([cross, q]) => cross && q === 64)).toBe(true);
  });

  it('local-blend masks cover the dilated, scaled-up region of the words and unite both prompts', () => {
    const blend = new LocalBlend(sd.components.tokenizer, ['a cat riding a bike', 'a dog riding a bike'], { words: ['cat', 'dog'] });
    expect(blend.tokens).toEqual([[2], [2]]);
    const maps = new Float32Array(2 * 16 * 77); // [2 prompts, 4×4 queries, 77 tokens]
    maps[(0 * 16 + 0) * 77 + 2] = 1; // source "cat" at the top-left cell
    maps[(1 * 16 + 15) * 77 + 2] = 1; // edit "dog" at the bottom-right cell
    const mask = blend.mask(maps, 4, 4, 8, 8);
    const rows = Array.from({ length: 8 }, (_, y) => Array.from(mask.subarray(y * 8, y * 8 + 8)).join(''));
    expect(rows).toEqual(['11110000', '11110000', '11110000', '11110000', '00001111', '00001111', '00001111', '00001111']);
  });
});
