// Prompt syntax and long prompts on SDXL (tiny-sdxl): both towers read the prompt in the same
// 77-token chunks, each with its own pad token; the pooled vector is the first chunk's.

import { beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/pipelines/generate.ts';
import { encodePromptEmbeddings } from '../../src/pipelines/prompt-embeddings.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { TINY_SDXL } from '../fixtures.ts';

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const mean = (values: Float32Array) => values.reduce((a, v) => a + v, 0) / values.length;
const LONG = `${'a red cat, '.repeat(30)}on a hill`; // ~122 tokens: 2 chunks

describe('SDXL reads prompt syntax and long prompts', () => {
  let sd: StableDiffusion;
  beforeAll(() => {
    sd = StableDiffusion.load(TINY_SDXL);
  });

  it('a prompt without syntax keeps its exact states and pooled vector', async () => {
    const before = await sd.encodeConditioning(['a photo of a cat']);
    const out = await encodePromptEmbeddings(sd, ['a photo of a cat'], undefined);
    expect(out.cond).toEqual(before.states);
    expect(out.pooled!.cond).toEqual(before.pooled);
  });

  it('a long prompt: chunk 1 is the truncated prompt (both towers, each padded its own way), pooled from it', async () => {
    const [tokens, width] = sd.contextShape;
    const warnings: string[] = [];
    const truncated = await encodeTruncated(sd, LONG, warnings);
    expect(warnings.length).toBeGreaterThan(0);
    const out = await encodePromptEmbeddings(sd, [LONG], [''], {});
    expect(out.chunks).toBe(2);
    expect(out.cond.length).toBe(2 * tokens * width);
    expect(maxAbsDiff(out.cond.subarray(0, tokens * width), truncated.states)).toBeLessThan(1e-6);
    expect(maxAbsDiff(out.pooled!.cond, truncated.pooled!)).toBeLessThan(1e-6);
    // The negative is padded to 2 chunks as well.
    expect(out.uncond!.length).toBe(out.cond.length);
    expect(out.pooled!.uncond!.length).toBe(sd.pooledWidth);
  });

  it('weights scale the tokens and keep the mean', async () => {
    const plain = await encodePromptEmbeddings(sd, ['a cat on a hill'], undefined, {});
    const stressed = await encodePromptEmbeddings(sd, ['a (cat:1.5) on a hill'], undefined, {});
    expect(maxAbsDiff(plain.cond, stressed.cond)).toBeGreaterThan(1e-3);
    expect(Math.abs(mean(stressed.cond) - mean(plain.cond))).toBeLessThan(1e-6);
  });

  it('generate cross-attends over both chunks', async () => {
    const run = { width: 64, height: 64, steps: 2, seed: 5, guidance: 5 };
    const long = await generate(sd, { ...run, prompts: [LONG] });
    expect(long.latents.every(Number.isFinite)).toBe(true);
    const cut = await generate(sd, { ...run, prompts: [LONG], maxChunks: 1 });
    expect(maxAbsDiff(long.latents, cut.latents)).toBeGreaterThan(1e-5);
  });
});

async function encodeTruncated(sd: StableDiffusion, prompt: string, warnings: string[]) {
  const original = console.warn;
  console.warn = (m: string) => warnings.push(m);
  try {
    return await sd.encodeConditioning([prompt]);
  } finally {
    console.warn = original;
  }
}
