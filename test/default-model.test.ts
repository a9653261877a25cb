// The shipped default model (models/default, trained by `npm run train:default`): it loads from the
// repository alone, reproduces an image from its seed, and follows colour words. Skipped, with a
// note, only when the folder has not been assembled yet.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COLOUR_PROMPTS, colourAgreement, hueStats } from '../src/data/colour.ts';
import { loadPipelineClip } from '../src/models/pipeline-clip.ts';
import { edit } from '../src/pipelines/edit.ts';
import { generate } from '../src/pipelines/generate.ts';
import { StableDiffusion } from '../src/pipelines/stable-diffusion.ts';

const MODEL = join(import.meta.dirname, '..', 'models', 'default');
const present = existsSync(join(MODEL, 'model_index.json'));
if (!present) console.warn(`default-model tests skipped: ${MODEL} does not exist yet (npm run train:default assembles it)`);

/** Issue 11: the model may take at most 60 MB of the repository. */
const MAX_BYTES = 60e6;

/** Bytes of every file under `dir`. */
function folderBytes(dir: string): number {
  return readdirSync(dir, { withFileTypes: true }).reduce((sum, entry) => {
    const path = join(dir, entry.name);
    return sum + (entry.isDirectory() ? folderBytes(path) : entry.isFile() ? statSync(path).size : 0);
  }, 0);
}

const SETTINGS = { steps: 15, scheduler: 'ddim' as const, guidance: 7.5, seed: 3 };

describe.skipIf(!present)('the default model', () => {
  it('loads, draws at its own size, and the same seed gives the same image', async () => {
    const sd = StableDiffusion.load(MODEL);
    expect(sd.defaultSize).toBe(64);
    const a = await generate(sd, { ...SETTINGS, prompts: ['red apple'] });
    const b = await generate(StableDiffusion.load(MODEL), { ...SETTINGS, prompts: ['red apple'] });
    expect(a.images[0].width).toBe(64);
    expect(Buffer.from(a.images[0].data.buffer).equals(Buffer.from(b.images[0].data.buffer))).toBe(true);
  }, 60_000);

  // The issue's bound (7 of 8), at the model's own guidance (its nuri.json: 5). At 7.5 its greens
  // and purple shift toward yellow and blue (README, "The default model"), a shift of
  // classifier-free guidance, not of what the model learnt.
  it("follows colour words: the dominant hue matches in at least 7 of 8 prompts (the model's own guidance, 5)", async () => {
    const sd = StableDiffusion.load(MODEL);
    expect(sd.components.defaults).toEqual({ guidance: 5, reweightCarry: true });
    const { guidance: _, ...ownGuidance } = SETTINGS;
    const { images } = await generate(sd, { ...ownGuidance, prompts: COLOUR_PROMPTS.map(([p]) => p) });
    const agreement = colourAgreement(images);
    const report = agreement.map(({ prompt, want, seen }) => `${prompt}: ${seen}${seen === want ? '' : ` (want ${want})`}`).join('; ');
    expect(agreement.filter(({ want, seen }) => seen === want).length, report).toBeGreaterThanOrEqual(7);
  }, 180_000);

  // Issue 11: CLIP is causal, so "heart" carries "blue"; the model's nuri.json carries re-weights into
  // the later words (pipelines/reweight-carry.ts). Measured over 12 edits: the object's share in the
  // hue 90% at ×1, 22% at ×0 (90% at ×0 with the attention re-weighted alone).
  it('re-weighting a colour word to 0 takes the colour away; at 1 it stays', async () => {
    const sd = StableDiffusion.load(MODEL);
    const share = async (factor: number) => hueStats((await edit(sd, { source: 'blue heart', reweight: { blue: factor }, scheduler: 'ddim', seed: 1 })).images[1], 'blue').objectShare;
    const [kept, removed] = [await share(1), await share(0)];
    expect(kept).toBeGreaterThan(0.7);
    expect(removed).toBeLessThan(0.3);
  }, 120_000);

  it("carries its CLIP: the image tower and both projections load with the text encoder", async () => {
    const clip = loadPipelineClip(MODEL);
    expect(clip.config.vision_config.image_size).toBe(64);
    expect(clip.config.projection_dim).toBe(clip.config.text_config.projection_dim);
  });

  it('fits the 60 MB the repository allows it', () => {
    expect(folderBytes(MODEL)).toBeLessThanOrEqual(MAX_BYTES);
  });
});
