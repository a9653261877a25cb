// Textual Inversion: loss and learned-row gradient against diffusers' textual_inversion.py procedure
// (reference case train_textual_inversion); a few steps change exactly one embedding row; the saved
// learned_embeds.safetensors makes the token usable through `--embedding`; the command resumes.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { AdamW, Generator, readSafetensors } from '../../src/engine/index.ts';
import { registerTrain } from '../../src/cli/train.ts';
import { registerPersonalisation } from '../../src/cli/train-personalise.ts';
import { ImageFolderDataset } from '../../src/data/folder.ts';
import { createImage } from '../../src/io/image.ts';
import { writePng } from '../../src/io/png.ts';
import { encodePrompts } from '../../src/models/clip-text.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { readEmbeddingFile } from '../../src/models/textual-inversion.ts';
import { personalise } from '../../src/pipelines/personalise.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { diffusionFeeds } from '../../src/training/diffusion-loss.ts';
import { noiseSchedule, tokenIdsFeed } from '../../src/training/fine-tune.ts';
import { listCheckpoints, lrSchedule, train } from '../../src/training/index.ts';
import { addPlaceholderToken, compileTextualInversionStep, saveLearnedEmbeds, textualInversionTask } from '../../src/training/textual-inversion.ts';
import { TINY_SD, referenceCase } from '../fixtures.ts';

const CASE = referenceCase('train_textual_inversion');
const ref = readSafetensors(CASE.file);
const f32 = (name: string) => ref.get(name)!.data as Float32Array;

/** max |a − b| / max |b|: the reference's tolerances are relative to the tensor's scale. */
function relativeError(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nuri-ti-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Textual Inversion vs diffusers', () => {
  it('adds <cat-toy> as id 49408 initialised from "toy", and tokenises the prompts as the reference', () => {
    const c = loadStableDiffusion(TINY_SD);
    const p = addPlaceholderToken(c.tokenizer, c.textEncoder, '<cat-toy>', 'toy');
    expect([p.id, p.initializerId]).toEqual([CASE.placeholder_id, CASE.initializer_id]);
    expect(p.row.value()).toEqual(f32('placeholder_embedding_init'));
    const ids = tokenIdsFeed(c.tokenizer, CASE.prompts as string[]);
    expect([...ids.data]).toEqual([...(ref.get('input_ids')!.data as BigInt64Array)]);
  });

  it('loss within 1e-6 and the learned row gradient within 1e-4 (relative) of the reference', async () => {
    const c = loadStableDiffusion(TINY_SD);
    const p = addPlaceholderToken(c.tokenizer, c.textEncoder, '<cat-toy>', 'toy');
    const schedule = noiseSchedule(c);
    const step = await compileTextualInversionStep(c, p.row, 2, [4, 16, 16], schedule);
    const timesteps = [...(ref.get('timesteps')!.data as BigInt64Array)].map(Number);
    const out = await step.run({
      ...diffusionFeeds(schedule.alphasCumprod, f32('latents'), [2, 4, 16, 16], f32('noise'), timesteps),
      input_ids: tokenIdsFeed(c.tokenizer, CASE.prompts as string[]),
    });
    const loss = f32('loss')[0];
    expect(Math.abs(out.loss - loss) / loss).toBeLessThan(1e-6);
    expect(relativeError(out.grads[0], f32('grad_placeholder_row'))).toBeLessThan(1e-4);
  });
});

async function writeImages(folder: string): Promise<void> {
  mkdirSync(folder, { recursive: true });
  const rng = new Generator(1);
  for (let i = 0; i < 3; i++) {
    const image = createImage(64, 64, [0.9, 0.3 * i, 0.1]);
    const noise = rng.rand(image.data.length);
    image.data.forEach((v, k) => (image.data[k] = Math.min(1, v * 0.8 + 0.2 * noise[k])));
    await writePng(join(folder, `${i}.png`), image);
  }
}

/** `nuri train …` in this process (sessions compiled by earlier tests are reused). */
async function nuri(args: string[]): Promise<void> {
  const program = new Command('nuri').exitOverride();
  registerPersonalisation(registerTrain(program));
  await program.parseAsync(args, { from: 'user' });
}

describe('training Textual Inversion', () => {
  it('changes exactly the placeholder row; the saved embedding makes the token usable', async () => {
    const images = join(dir, 'images');
    await writeImages(images);
    const sd = StableDiffusion.load(TINY_SD);
    const fresh = loadStableDiffusion(TINY_SD);
    const data = await ImageFolderDataset.load(images, { resolution: 64 });
    const { task, placeholder } = await textualInversionTask(sd, data, { token: '<cat-toy>', initToken: 'toy', batch: 2, flip: true });
    const result = await train({ task, optimizer: new AdamW([placeholder.row], { lr: 5e-2 }), lr: lrSchedule({ kind: 'constant', lr: 5e-2 }), steps: 3, rng: new Generator(0) });
    expect(result.losses).toHaveLength(3);

    // Every parameter of every model is bitwise the checkpoint's; only the added row moved.
    const row = placeholder.row;
    const bytes = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
    for (const name of ['unet', 'textEncoder', 'vae'] as const) {
      const trained = sd.components[name].parameters().filter((p) => p !== row);
      const base = fresh[name].parameters();
      expect(trained.map((p) => p.name)).toEqual(base.map((p) => p.name));
      trained.forEach((p, i) => expect(bytes(p.value()).equals(bytes(base[i].value())), p.name).toBe(true));
    }
    expect(row.value()).not.toEqual(fresh.textEncoder.tokenEmbeddingRow(5988));

    // learned_embeds.safetensors: one tensor named after the token, [1, C], the learned row.
    const path = saveLearnedEmbeds(join(dir, 'saved'), placeholder);
    const saved = readEmbeddingFile(path);
    expect(saved.token).toBe('<cat-toy>');
    expect(saved.vectors[0]).toEqual(row.value());

    // --embedding: a fresh model given the file encodes "<cat-toy>" with the learned row, which
    // differs from what the initializer "toy" encodes to.
    const user = loadStableDiffusion(TINY_SD);
    await personalise(user, { embeddings: [path] });
    const withToken = await encodePrompts(user.textEncoder, user.tokenizer, ['a photo of a <cat-toy>']);
    const expected = await encodePrompts(sd.components.textEncoder, sd.components.tokenizer, ['a photo of a <cat-toy>']);
    const withInit = await encodePrompts(user.textEncoder, user.tokenizer, ['a photo of a toy']);
    expect(withToken.data).toEqual(expected.data);
    expect(relativeError(withToken.data, withInit.data)).toBeGreaterThan(1e-3);
  });

  it('nuri train textual-inversion writes learned_embeds.safetensors and resumes to more steps', async () => {
    const images = join(dir, 'images');
    const out = join(dir, 'cli');
    const args = ['train', 'textual-inversion', '--model', TINY_SD, '--images', images, '--token', '<cat-toy>', '--init-token', 'toy', '--resolution', '64', '--batch', '2', '--flip', '--out', out];
    await nuri([...args, '--steps', '2']);
    const first = readEmbeddingFile(join(out, 'learned_embeds.safetensors')).vectors[0];
    await nuri([...args, '--steps', '3', '--resume']);
    expect(listCheckpoints(join(out, 'checkpoints')).map((c) => c.step)).toEqual([2, 3]);
    expect(readEmbeddingFile(join(out, 'learned_embeds.safetensors')).vectors[0]).not.toEqual(first);
    await expect(nuri([...args, '--steps', '3'])).rejects.toThrow(/--resume/);
  });
});
