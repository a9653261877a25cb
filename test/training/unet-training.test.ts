// UNet training on the tiny fixture pipeline: caption dropout, a few steps through the generic
// loop, and an exported pipeline folder that loads with the trained weights.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdamW, Generator } from '../../src/engine/index.ts';
import { ImageFolderDataset } from '../../src/data/folder.ts';
import { encodePrompts } from '../../src/models/clip-text.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { WEIGHTS_FILE, exportPipeline } from '../../src/training/export.ts';
import { lrSchedule, train } from '../../src/training/index.ts';
import { unetTrainingTask } from '../../src/training/unet-training.ts';
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
});
