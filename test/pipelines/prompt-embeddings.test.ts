// Long and weighted prompts against diffusers' long-prompt-weighting community pipeline
// (reference-2, case m): the chunked, weighted embeddings at 75/76/151 tokens, a weighted prompt with
// a weighted negative and a 156-token prompt (3 chunks) through DDIM, 10 steps at 128×128. The lpw
// cases use tiny-sd with its final LayerNorm replaced by the vectors they store (tiny-sd's own makes
// lpw's mean-preserving rescale 0/0).

import { beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { generate } from '../../src/pipelines/generate.ts';
import { encodePromptEmbeddings, planPromptChunks } from '../../src/pipelines/prompt-embeddings.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { layoutChunks } from '../../src/tokenizers/prompt-tokens.ts';
import { TINY_SD, referenceCase } from '../fixtures.ts';

const EMBEDDING_TOLERANCE = 1e-5; // the cases' stated bound
const LATENT_TOLERANCE = 1e-4;
// The cases' call: DDIM, 10 steps, 128×128, guidance 7.5, max_embeddings_multiples=3.
const LPW_RUN = { maxChunks: 3, scheduler: 'ddim', guidance: 7.5, steps: 10, width: 128, height: 128 } as const;

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function lpwModel(): StableDiffusion {
  const sd = StableDiffusion.load(TINY_SD);
  const ref = readSafetensors(referenceCase('lpw_parse').file);
  const norm = sd.components.textEncoder.finalLayerNorm;
  norm.weight.setValue(ref.get('te_final_layer_norm_weight')!.data as Float32Array);
  norm.bias.setValue(ref.get('te_final_layer_norm_bias')!.data as Float32Array);
  return sd;
}

describe('long and weighted prompt embeddings match lpw_stable_diffusion on tiny-sd', () => {
  let sd: StableDiffusion;
  beforeAll(() => {
    sd = lpwModel();
  });

  for (const count of [75, 76, 151]) {
    it(`'cat ' × ${count}: each chunk encoded on its own, concatenated`, async () => {
      const ref = readSafetensors(referenceCase('lpw_parse').file);
      const expected = ref.get(`cat_x${count}_embeddings`)!;
      const out = await encodePromptEmbeddings(sd, ['cat '.repeat(count)], undefined, { maxChunks: 3 });
      expect(out.tokens).toBe(expected.shape[1]);
      const error = maxAbsDiff(out.cond, expected.data as Float32Array);
      expect(error).toBeLessThan(EMBEDDING_TOLERANCE);
    });
  }

  it('past 3 chunks (lpw) the tail is dropped with a warning; without a limit (A1111) a 4th chunk is made', async () => {
    const warnings: string[] = [];
    const capped = await encodePromptEmbeddings(sd, ['cat '.repeat(300)], undefined, { maxChunks: 3, onWarning: (m) => warnings.push(m) });
    expect(capped.tokens).toBe(231);
    expect(warnings.join()).toMatch(/dropped its last 75 tokens/);
    const full = await encodePromptEmbeddings(sd, ['cat '.repeat(300)], undefined);
    expect(full.tokens).toBe(308);
    // The first three chunks are the same tokens: the same states before any weighting.
    expect(maxAbsDiff(full.cond.subarray(0, capped.cond.length), capped.cond)).toBe(0);
  });

  for (const name of ['lpw_weighted', 'lpw_long_3chunks']) {
    it(`${name}: chunk inputs, prompt and negative embeddings, and DDIM latents per step`, async () => {
      const c = referenceCase(name) as unknown as { file: string; prompt: string; negative_prompt: string | null };
      const ref = readSafetensors(c.file);
      const get = (n: string) => ref.get(n)!.data as Float32Array;
      const negative = c.negative_prompt ?? '';
      const { tokenizer } = sd.components;
      const plan = planPromptChunks(tokenizer, [c.prompt, negative], { maxChunks: 3 });
      const layouts = plan.tokens.map((t) => layoutChunks(tokenizer, t, plan.chunks));
      const chunkIds = Array.from(ref.get('chunk_input_ids')!.data as BigInt64Array, Number);
      expect([...layouts[0].ids, ...layouts[1].ids]).toEqual(chunkIds);
      expect(layouts[0].weights).toEqual(get('prompt_weights'));
      expect(layouts[1].weights).toEqual(get('negative_weights'));

      const unweighted = (await sd.encodeTokenIds([layouts[0].ids])).states;
      expect(maxAbsDiff(unweighted, get('prompt_embeds_unweighted'))).toBeLessThan(EMBEDDING_TOLERANCE);
      const out = await encodePromptEmbeddings(sd, [c.prompt], [negative], { maxChunks: 3 });
      expect(maxAbsDiff(out.cond, get('prompt_embeds'))).toBeLessThan(EMBEDDING_TOLERANCE);
      expect(maxAbsDiff(out.uncond!, get('negative_prompt_embeds'))).toBeLessThan(EMBEDDING_TOLERANCE);

      const steps: Float32Array[] = [];
      const run = { ...LPW_RUN, prompts: [c.prompt], negativePrompt: c.negative_prompt ?? undefined, latents: get('initial_latents') };
      const result = await generate(sd, { ...run, onStep: (p) => steps.push(p.latents) });
      const perStep = get('latents_after_each_step');
      const size = result.latents.length;
      const stepError = Math.max(...steps.map((s, i) => maxAbsDiff(s, perStep.subarray(i * size, (i + 1) * size))));
      expect(stepError).toBeLessThan(LATENT_TOLERANCE);
      expect(maxAbsDiff(result.latents, get('latents_out'))).toBeLessThan(LATENT_TOLERANCE);
      console.log(`${name}: ${out.tokens} context positions, max |Δ| per-step latents ${stepError.toExponential(2)}`);
    });
  }
});

describe('a prompt without syntax conditions exactly as before', () => {
  let sd: StableDiffusion;
  beforeAll(() => {
    sd = StableDiffusion.load(TINY_SD);
  });

  it('gives the plain encoder states bit for bit, and so does the chunk layout of the same prompt', async () => {
    const prompts = ['a photo of a cat', 'a dog riding a bike, 4k: sharp'];
    const before = await sd.encodePrompts(prompts);
    const out = await encodePromptEmbeddings(sd, prompts, ['', ''], {});
    expect(out.tokens).toBe(77);
    expect(out.cond).toEqual(before);
    expect(out.uncond).toEqual(await sd.encodePrompts(['', '']));
    const { tokenizer } = sd.components;
    const plan = planPromptChunks(tokenizer, prompts);
    const ids = new Int32Array(plan.tokens.flatMap((t) => [...layoutChunks(tokenizer, t, 1).ids]));
    expect((await sd.encodeTokenIds([ids])).states).toEqual(before);
  });

  it('--no-prompt-syntax reads brackets as text', async () => {
    const literal = await encodePromptEmbeddings(sd, ['a (cat:1.3)'], undefined, { promptSyntax: false });
    expect(literal.cond).toEqual(await sd.encodePrompts(['a (cat:1.3)']));
    const parsed = await encodePromptEmbeddings(sd, ['a (cat:1.3)'], undefined);
    expect(maxAbsDiff(parsed.cond, literal.cond)).toBeGreaterThan(1e-3);
  });
});
