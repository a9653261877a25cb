// A re-weight that also moves what the word left in the states after it (pipelines/reweight-carry.ts):
// checked on tiny-sd against the states of the prompt with the word's tokens replaced by padding,
// built here from the tokenizer's ids; and through `edit`, where a model's nuri.json can turn it on.
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { edit } from '../../src/pipelines/edit.ts';
import { encodePromptEmbeddings } from '../../src/pipelines/prompt-embeddings.ts';
import { planPromptToPrompt } from '../../src/pipelines/prompt-to-prompt.ts';
import { carryGain, carryReweights } from '../../src/pipelines/reweight-carry.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { TINY_SD, TINY_SDXL } from '../fixtures.ts';
import { copyTinySd } from '../model-copy.ts';

const PROMPT = 'a red heart on a wooden table';

describe('reweight carry', () => {
  let sd: StableDiffusion;
  let own: Float32Array;
  let width: number;
  beforeAll(async () => {
    sd = StableDiffusion.load(TINY_SD);
    own = await sd.encodePrompts([PROMPT]);
    width = sd.contextShape[1];
  });

  /** The prompt's states with the tokens at `positions` replaced by padding. */
  async function withoutTokens(positions: number[]): Promise<Float32Array> {
    const tokenizer = sd.components.tokenizer;
    const ids = new Int32Array(tokenizer.modelMaxLength).fill(tokenizer.padTokenId);
    const words = tokenizer.encode(PROMPT);
    ids[0] = tokenizer.bosTokenId;
    ids.set(words, 1);
    ids[words.length + 1] = tokenizer.eosTokenId;
    for (const p of positions) ids[p] = tokenizer.padTokenId;
    return (await sd.encodeTokenIds([ids])).states;
  }

  async function carried(reweight: Record<string, number>, prompt = PROMPT): Promise<{ states: Float32Array; positions: number[][] }> {
    const plan = planPromptToPrompt(sd.components.tokenizer, { source: prompt, reweight }, 10);
    const states = prompt === PROMPT ? own.slice() : (await encodePromptEmbeddings(sd, [prompt], undefined)).cond;
    await carryReweights(sd, plan, states);
    return { states, positions: plan.reweighted.map((w) => w.positions) };
  }

  const row = (states: Float32Array, p: number) => states.subarray(p * width, (p + 1) * width);

  it('takes the word out of every later state at ×0, keeps the states before it and its own', async () => {
    const { states, positions } = await carried({ red: 0 });
    const red = positions[0]!;
    expect(red).toEqual([2]);
    const without = await withoutTokens(red);
    for (let p = 0; p < 77; p++) {
      const want = p <= red[0]! ? own : without; // before "red" both encodings agree (causal); "red" keeps its own
      expect(Array.from(row(states, p)), `position ${p}`).toEqual(Array.from(p === red[0]! ? row(own, p) : row(want, p)).map((v) => expect.closeTo(v, 5)));
    }
    expect(Math.max(...row(own, 3).map((v, c) => Math.abs(v - row(without, 3)[c]!)))).toBeGreaterThan(1e-3); // "heart" did carry "red"
  });

  it('moves halfway at ×0.5, and not at all from ×1 up; below 0 as at 0 (it never extrapolates)', async () => {
    expect([-2, 0, 0.5, 1, 2, 3].map(carryGain)).toEqual([0, 0, 0.5, 1, 1, 1]);
    const without = await withoutTokens([2]);
    const half = (await carried({ red: 0.5 })).states;
    for (const c of [3 * width, 3 * width + 7, 10 * width + 1, 40 * width + 5]) expect(half[c]).toBeCloseTo((own[c]! + without[c]!) / 2, 5);
    expect((await carried({ red: 1 })).states).toEqual(own);
    expect((await carried({ red: 3 })).states).toEqual(own);
    expect((await carried({ red: -2 })).states).toEqual((await carried({ red: 0 })).states);
  });

  it('adds the moves of several words, each against the prompt\'s own states', async () => {
    const { states } = await carried({ red: 0, wooden: 0.5 });
    const [noRed, noWooden] = [await withoutTokens([2]), await withoutTokens([6])];
    for (const c of [7 * width, 7 * width + 3, 20 * width + 9]) {
      expect(states[c]).toBeCloseTo(own[c]! - (own[c]! - noRed[c]!) - 0.5 * (own[c]! - noWooden[c]!), 5);
    }
    // "heart" comes before "wooden": only "red" moves it; "wooden" itself moves with "red" only.
    expect(Array.from(row(states, 3))).toEqual(Array.from(row(noRed, 3)).map((v) => expect.closeTo(v, 5)));
    expect(Array.from(row(states, 6))).toEqual(Array.from(row(noRed, 6)).map((v) => expect.closeTo(v, 5)));
  });

  it('with emphasis syntax, rescales the masked states by the prompt\'s own emphasis ratio', async () => {
    const prompt = 'a (red:1.3) heart on a (wooden:0.8) table';
    const emphasised = (await encodePromptEmbeddings(sd, [prompt], undefined)).cond;
    expect((await carried({ red: 1 }, prompt)).states).toEqual(emphasised);
    const moved = (await carried({ red: 0 }, prompt)).states;
    expect(Array.from(row(moved, 1))).toEqual(Array.from(row(emphasised, 1))); // before "red": as it was
    // After it: the states of the same prompt with "red" as padding, emphasised with the prompt's ratio.
    const raw = await sd.encodePrompts(['a red heart on a wooden table']);
    const without = await withoutTokens([2]);
    const ratio = row(emphasised, 1)[0]! / row(raw, 1)[0]!;
    for (const [p, weight] of [[3, 1], [6, 0.8], [20, 1]] as const) {
      for (const c of [0, 5, 11]) expect(row(moved, p)[c]).toBeCloseTo(row(without, p)[c]! * weight * ratio, 4);
    }
  });
});

describe('reweight carry in an edit', () => {
  const model = copyTinySd();
  afterAll(() => rmSync(dirname(model), { recursive: true, force: true }));
  const options = { source: 'a red heart', reweight: { red: 0 }, steps: 3, width: 64, height: 64, seed: 1 };

  it("changes a ×0 edit, not a ×1 one, and follows the model's nuri.json unless the edit says", async () => {
    const sd = StableDiffusion.load(model);
    const plain = await edit(sd, options);
    const carried = await edit(sd, { ...options, reweightCarry: true });
    expect([plain.reweightCarry, carried.reweightCarry]).toEqual([false, true]);
    expect(carried.images[0].data).toEqual(plain.images[0].data); // the source row is untouched
    expect(carried.images[1].data).not.toEqual(plain.images[1].data);
    expect((await edit(sd, { ...options, reweight: { red: 1 }, reweightCarry: true })).images[1].data).toEqual((await edit(sd, { ...options, reweight: { red: 1 } })).images[1].data);

    writeFileSync(join(model, 'nuri.json'), JSON.stringify({ defaults: { reweightCarry: true } }));
    const withDefault = StableDiffusion.load(model);
    expect(withDefault.components.defaults).toEqual({ reweightCarry: true });
    const byDefault = await edit(withDefault, options);
    expect(byDefault.reweightCarry).toBe(true);
    expect(byDefault.images[1].data).toEqual(carried.images[1].data);
    expect((await edit(withDefault, { ...options, reweightCarry: false })).images[1].data).toEqual(plain.images[1].data);
  });

  it("on SDXL moves both towers' states and the pooled embedding, and changes the edit", async () => {
    const sdxl = StableDiffusion.load(TINY_SDXL);
    const [w1, w2] = sdxl.tokenizers.map((t) => t.padTokenId);
    expect(w1).not.toBe(w2); // the towers pad differently: each row is masked with its own
    const plan = planPromptToPrompt(sdxl.components.tokenizer, { source: options.source, reweight: { red: 0 } }, 10);
    expect(plan.reweighted[0]!.positions).toEqual([2]);
    const text = await encodePromptEmbeddings(sdxl, [options.source], undefined);
    const [states, pooled] = [text.cond.slice(), text.pooled!.cond.slice()];
    await carryReweights(sdxl, plan, states, {}, pooled);
    const masked = sdxl.tokenizers.map((t) => {
      const ids = t.call([options.source]).inputIds[0]!.slice();
      ids[2] = t.padTokenId;
      return ids;
    });
    const without = await sdxl.encodeTokenIds(masked);
    const width = sdxl.contextShape[1];
    const close = (a: Float32Array) => Array.from(a).map((v) => expect.closeTo(v, 5));
    expect(Array.from(states.subarray(0, 3 * width))).toEqual(close(text.cond.subarray(0, 3 * width))); // BOS, "a", "red" itself
    expect(Array.from(states.subarray(3 * width))).toEqual(close(without.states.subarray(3 * width)));
    expect(Array.from(pooled)).toEqual(close(without.pooled!));
    expect(Math.max(...pooled.map((v, c) => Math.abs(v - text.pooled!.cond[c]!)))).toBeGreaterThan(1e-4);

    const plain = await edit(sdxl, options);
    const carried = await edit(sdxl, { ...options, reweightCarry: true });
    expect(carried.images[0].data).toEqual(plain.images[0].data);
    expect(carried.images[1].data).not.toEqual(plain.images[1].data);
  });
});
