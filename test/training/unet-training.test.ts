// UNet training on the tiny fixture pipeline: caption dropout, a few steps through the generic
// loop, and an exported pipeline folder that loads with the trained weights.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdamW, Generator } from '../../src/engine/index.ts';
import { ImageFolderDataset } from '../../src/data/folder.ts';
import { compileClipText, encodePrompts } from '../../src/models/clip-text.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { WEIGHTS_FILE, exportPipeline } from '../../src/training/export.ts';
import { lrSchedule, train } from '../../src/training/index.ts';
import { isolatedWordStates, unetTrainingTask } from '../../src/training/unet-training.ts';
import { TINY_SD } from '../fixtures.ts';
import { writeToyShapes } from './toy-data.ts';

function sameValues(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

let images: string;
let out: string;
beforeAll(async () => {
  images = await writeToyShapes(64);
  out = mkdtempSync(join(tmpdir(), 'nuri-unet-out-'));
});
afterAll(() => {
  rmSync(images, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
});

describe('UNet training', () => {
  it('drops captions to "", trains, and exports a pipeline that loads with the trained UNet', async () => {
    const sd = loadStableDiffusion(TINY_SD);
    const data = await ImageFolderDataset.load(images, { resolution: 64, requireCaptions: true });
    const task = await unetTrainingTask(sd, data, { batch: 2, captionDropout: 1, flip: true });

    // With dropout 1 every caption is "": the context is the empty prompt's token states.
    const feeds = (await task.nextBatch(new Generator(1), 0)) as Record<string, { data: Float32Array; shape: number[] }>;
    const empty = (await encodePrompts(sd.textEncoder, sd.tokenizer, ['', ''])).data;
    expect(feeds.encoder_hidden_states.data).toEqual(empty);
    expect(feeds.latents.shape).toEqual([2, 4, 8, 8]);
    expect(feeds.timestep.data.every((t) => Number.isInteger(t) && t >= 0 && t < 1000)).toBe(true);

    const params = task.step.params;
    const before = params[0].value().slice();
    const result = await train({ task, optimizer: new AdamW(params, { lr: 1e-3 }), lr: lrSchedule({ kind: 'constant', lr: 1e-3 }), steps: 2, rng: new Generator(2) });
    expect(result.losses.every(Number.isFinite)).toBe(true);
    expect(sameValues(params[0].value(), before)).toBe(false);

    const unetConfig = JSON.parse(readFileSync(join(TINY_SD, 'unet', 'config.json'), 'utf8'));
    exportPipeline(TINY_SD, out, { unet: { config: unetConfig, params, weightsFile: WEIGHTS_FILE.diffusers } });
    const reloaded = loadStableDiffusion(out);
    const byName = new Map(reloaded.unet.parameters().map((p) => [p.name, p]));
    // Plain comparisons: vitest's deep equality walks millions of elements slowly.
    expect(params.filter((p) => !sameValues(byName.get(p.name)!.value(), p.value())).map((p) => p.name)).toEqual([]);
    expect(readFileSync(join(out, 'text_encoder', 'model.safetensors')).equals(readFileSync(join(TINY_SD, 'text_encoder', 'model.safetensors')))).toBe(true);
    expect(() => exportPipeline(TINY_SD, TINY_SD, {})).toThrow(/must differ/);
  });

  it("trains captions with the empty prompt's end-of-text states (EOS and the padding) from --padding-dropout-from on", async () => {
    const sd = loadStableDiffusion(TINY_SD);
    const data = await ImageFolderDataset.load(images, { resolution: 64, requireCaptions: true });
    /** The first item's token states at optimiser step `step`, from a fresh task: the same draws, only the step differs. */
    const firstStates = async (step: number) => {
      const task = await unetTrainingTask(sd, data, { batch: 2, paddingDropout: 1, paddingDropoutFrom: 5 });
      const { data: states, shape } = ((await task.nextBatch(new Generator(1), step)) as Record<string, { data: Float32Array; shape: number[] }>).encoder_hidden_states;
      return states.subarray(0, shape[1] * shape[2]);
    };
    const before = await firstStates(4);
    const after = await firstStates(5);
    const row = before.length;
    const captions = data.items.map((i) => i.caption);
    const own = (await encodePrompts(sd.textEncoder, sd.tokenizer, captions)).data;
    const item = captions.findIndex((_, i) => sameValues(own.subarray(i * row, (i + 1) * row), before));
    expect(item).toBeGreaterThanOrEqual(0); // before step 5: a caption's own states
    const empty = (await encodePrompts(sd.textEncoder, sd.tokenizer, [''])).data;
    const padding = (sd.tokenizer.encode(captions[item]).length + 1) * sd.textEncoder.config.hidden_size; // after BOS and the words
    expect(sameValues(after.subarray(0, padding), before.subarray(0, padding))).toBe(true);
    expect(sameValues(after.subarray(padding), empty.subarray(padding))).toBe(true);
    expect(sameValues(before.subarray(padding), empty.subarray(padding))).toBe(false);
  });

  it('--word-isolation: each word\'s states as if the words before it were absent, and the end-of-text emptied', async () => {
    const sd = loadStableDiffusion(TINY_SD);
    const { tokenizer, textEncoder } = sd;
    const width = textEncoder.config.hidden_size;
    const graph = await compileClipText(textEncoder, { length: tokenizer.modelMaxLength });
    const at = (states: Float32Array, position: number) => states.subarray(position * width, (position + 1) * width);
    const [red, blue] = [await isolatedWordStates(tokenizer, graph, 'red heart', width), await isolatedWordStates(tokenizer, graph, 'blue heart', width)];
    const own = (await encodePrompts(textEncoder, tokenizer, ['red heart', 'blue heart'])).data;
    const [ownRed, ownBlue] = [own.subarray(0, own.length / 2), own.subarray(own.length / 2)];
    // BOS and the first word: causal attention already keeps them to themselves.
    expect(sameValues(red.subarray(0, 2 * width), ownRed.subarray(0, 2 * width))).toBe(true);
    // "heart" no longer knows which colour came before it; in the caption's own states it does.
    expect(sameValues(at(red, 2), at(blue, 2))).toBe(true);
    expect(sameValues(at(ownRed, 2), at(ownBlue, 2))).toBe(false);
    expect(sameValues(at(red, 2), at(ownRed, 2))).toBe(false);
    // "" has no words: its states are the empty prompt's.
    expect(sameValues(await isolatedWordStates(tokenizer, graph, '', width), (await encodePrompts(textEncoder, tokenizer, [''])).data)).toBe(true);

    // In training, from --word-isolation-from on: a caption's isolated word states, then the empty prompt's.
    const data = await ImageFolderDataset.load(images, { resolution: 64, requireCaptions: true });
    const firstStates = async (step: number) => {
      const task = await unetTrainingTask(sd, data, { batch: 2, wordIsolation: 1, wordIsolationFrom: 5 });
      const { data: states } = ((await task.nextBatch(new Generator(1), step)) as Record<string, { data: Float32Array }>).encoder_hidden_states;
      return states.subarray(0, tokenizer.modelMaxLength * width);
    };
    const empty = (await encodePrompts(textEncoder, tokenizer, [''])).data;
    const expected = async (caption: string) => {
      const states = await isolatedWordStates(tokenizer, graph, caption, width);
      const words = (tokenizer.encode(caption).length + 1) * width;
      return new Float32Array([...states.subarray(0, words), ...empty.subarray(words)]);
    };
    const captions = [...new Set(data.items.map((i) => i.caption))];
    const after = await firstStates(5);
    const matches = await Promise.all(captions.map(async (c) => sameValues(after, await expected(c))));
    expect(matches.filter(Boolean)).toHaveLength(1);
    const before = await firstStates(4);
    const ownStates = (await encodePrompts(textEncoder, tokenizer, [captions[matches.indexOf(true)]])).data;
    expect(sameValues(before, ownStates)).toBe(true); // the same draws, before the step: the caption's own states
    await graph.release();
  });
});
