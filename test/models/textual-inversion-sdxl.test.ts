// Textual Inversion on SDXL: an embedding file with "clip_l" and "clip_g" rows adds one token to
// both tokenizers and its rows to each text encoder; one-encoder embeddings and SDXL ones on the
// wrong model are refused by name, leaving the model as it was.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../src/engine/safetensors.ts';
import { embeddingFileToken } from '../../src/models/textual-inversion.ts';
import { personalise } from '../../src/pipelines/personalise.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { TINY_SD, TINY_SDXL } from '../fixtures.ts';
import { maxAbsDiff } from '../schedulers/reference.ts';

const tmp = mkdtempSync(join(tmpdir(), 'nuri-ti-sdxl-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const clipL = Float32Array.from({ length: 2 * 4 }, (_, i) => Math.sin(i + 1));
const clipG = Float32Array.from({ length: 2 * 8 }, (_, i) => Math.cos(i + 1));
const SDXL_FILE = join(tmp, 'toy-cat.safetensors');
writeSafetensors(SDXL_FILE, { clip_l: { dtype: 'F32', shape: [2, 4], data: clipL }, clip_g: { dtype: 'F32', shape: [2, 8], data: clipG } });
const SD_FILE = join(tmp, 'sd1.safetensors');
writeSafetensors(SD_FILE, { emb_params: { dtype: 'F32', shape: [1, 4], data: clipL.slice(0, 4) } });

describe('SDXL Textual Inversion (clip_l / clip_g)', () => {
  it('adds the token to both towers with its own rows, and the prompt conditions on them', async () => {
    const sd = StableDiffusion.load(TINY_SDXL);
    const before = await sd.encodeConditioning(['a photo of toy-cat']);
    const result = await personalise(sd.components, { embeddings: [SDXL_FILE] });
    expect(embeddingFileToken(SDXL_FILE)).toBe('toy-cat');
    const { tokenizer, tokenizer2, textEncoder, textEncoder2 } = sd.components;
    const ids = tokenizer.call(['toy-cat toy-cat_1']).inputIds[0]!.slice(1, 3);
    expect([...ids]).toEqual([49408, 49409]);
    expect([...tokenizer2!.call(['toy-cat toy-cat_1']).inputIds[0]!.slice(1, 3)]).toEqual([49408, 49409]);
    expect(textEncoder.embeddings.addedTokens.map((p) => [...p.value()])).toEqual([[...clipL.slice(0, 4)], [...clipL.slice(4)]]);
    expect(textEncoder2!.embeddings.addedTokens.map((p) => [...p.value()])).toEqual([[...clipG.slice(0, 8)], [...clipG.slice(8)]]);
    await sd.releaseTextEncoder(); // the graphs were traced before the new rows existed
    const after = await sd.encodeConditioning([result.expandPrompt('a photo of toy-cat')]);
    expect(maxAbsDiff(after.states, before.states)).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(after.pooled!, before.pooled!)).toBeGreaterThan(1e-4);
  });

  it('refuses a one-encoder embedding on SDXL and an SDXL embedding on SD, changing nothing', async () => {
    const sdxl = StableDiffusion.load(TINY_SDXL);
    await expect(personalise(sdxl.components, { embeddings: [SD_FILE] })).rejects.toThrow(/has one set of vectors; an SDXL model needs "clip_l" and "clip_g"/);
    expect(sdxl.components.textEncoder.embeddings.addedTokens).toHaveLength(0);
    const sd = StableDiffusion.load(TINY_SD);
    await expect(personalise(sd.components, { embeddings: [SDXL_FILE] })).rejects.toThrow(/is an SDXL embedding \(clip_l and clip_g\); this model has one text encoder/);
    expect(sd.components.textEncoder.embeddings.addedTokens).toHaveLength(0);
  });
});
