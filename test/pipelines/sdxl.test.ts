// SDXL on tiny-sdxl against diffusers' StableDiffusionXLPipeline: both tokenizers, both text
// encoders, encode_prompt (negative None → zeros, text, ""), and whole Euler pipelines with size
// conditioning — latents after every step, final latents, and what the UNet received.
import { beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/engine/safetensors.ts';
import { compileSdxlTextEncoder } from '../../src/models/sdxl-text.ts';
import { crossAttentionMaps } from '../../src/pipelines/attention-maps.ts';
import { edit } from '../../src/pipelines/edit.ts';
import { generate } from '../../src/pipelines/generate.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { TINY_SD, TINY_SDXL, referenceCase } from '../fixtures.ts';
import { maxAbsDiff } from '../schedulers/reference.ts';

function reference(name: string) {
  const c = referenceCase(name);
  const tensors = readSafetensors(c.file);
  const get = (n: string) => {
    const t = tensors.get(n);
    if (!t) throw new Error(`${name} has no tensor ${n}`);
    return t;
  };
  return { c, has: (n: string) => tensors.has(n), floats: (n: string) => get(n).data as Float32Array, ids: (n: string) => Array.from(get(n).data as BigInt64Array, Number), shape: (n: string) => get(n).shape };
}

let sd: StableDiffusion;
beforeAll(() => {
  sd = StableDiffusion.load(TINY_SDXL);
});

describe('SDXL text conditioning against diffusers', () => {
  it('both tokenizers give the reference ids exactly (tokenizer_2 pads with "!" = 0)', () => {
    const r = reference('sdxl_tokenization');
    const prompts = r.c.prompts as string[];
    for (const [tokenizer, name] of [[sd.components.tokenizer, 'input_ids'], [sd.components.tokenizer2!, 'input_ids_2']] as const) {
      const ours = tokenizer.call(prompts, { maxLength: 77, onWarning: () => {} }).inputIds.flatMap((row) => [...row]);
      expect(ours).toEqual(r.ids(name));
    }
    expect(sd.components.tokenizer2!.padTokenId).toBe(0);
  });

  it("each text encoder's penultimate states and te2's text_embeds within 1e-5", async () => {
    const r = reference('sdxl_text_encoders');
    const cases = [
      { model: sd.components.textEncoder, ids: 'input_ids', states: 'te1_hidden_states_penultimate' },
      { model: sd.components.textEncoder2!, ids: 'input_ids_2', states: 'te2_hidden_states_penultimate', embeds: 'te2_text_embeds' },
    ];
    for (const c of cases) {
      const graph = await compileSdxlTextEncoder(c.model);
      const ids = BigInt64Array.from(r.ids(c.ids), BigInt);
      const out = await graph.run({ input_ids: { data: ids, shape: [4, 77] } });
      const errStates = maxAbsDiff(out.hidden_states.data as Float32Array, r.floats(c.states));
      console.log(`sdxl ${c.states}: max |Δ| ${errStates.toExponential(2)}`);
      expect(errStates).toBeLessThan(1e-5);
      if (c.embeds) {
        expect(out.text_embeds.shape).toEqual([4, 16]);
        expect(maxAbsDiff(out.text_embeds.data as Float32Array, r.floats(c.embeds))).toBeLessThan(1e-5);
      } else expect(out.text_embeds).toBeUndefined();
      await graph.release();
    }
  });

  it('encode_prompt: concatenated states, pooled vector, and the three kinds of negative', async () => {
    const r = reference('sdxl_encode_prompt');
    const check = (ours: { states: Float32Array; pooled?: Float32Array }, states: string, pooled: string) => {
      expect(maxAbsDiff(ours.states, r.floats(states))).toBeLessThan(1e-5);
      expect(maxAbsDiff(ours.pooled!, r.floats(pooled))).toBeLessThan(1e-5);
    };
    expect(sd.contextShape).toEqual([77, 12]);
    check(await sd.encodeConditioning(['a photo of a cat']), 'prompt_embeds', 'pooled_prompt_embeds');
    const none = await sd.encodeNegative(undefined, 1);
    check(none, 'negative_prompt_embeds_none', 'negative_pooled_prompt_embeds_none');
    expect(none.states.every((v) => v === 0) && none.pooled!.every((v) => v === 0)).toBe(true);
    check(await sd.encodeNegative('blurry, low quality', 1), 'negative_prompt_embeds_blurry', 'negative_pooled_prompt_embeds_blurry');
    const empty = await sd.encodeNegative('', 1);
    check(empty, 'negative_prompt_embeds_empty_string', 'negative_pooled_prompt_embeds_empty_string');
    expect(empty.states.some((v) => v !== 0)).toBe(true);
  });
});

type Size = [number, number];
const PIPELINES: { name: string; prompt: string; negative?: string; guidance: number; width: number; height: number; sizes?: Record<string, Size> }[] = [
  { name: 'sdxl_pipeline_euler_g5', prompt: 'a photo of a cat', guidance: 5, width: 64, height: 64 },
  // 9 latents: not divisible by the UNet's 2² (case o).
  { name: 'sdxl_pipeline_euler_g5_72x72', prompt: 'a photo of a cat', guidance: 5, width: 72, height: 72 },
  {
    name: 'sdxl_pipeline_euler_g5_negative_sizes',
    prompt: 'an astronaut riding a horse on mars',
    negative: 'blurry, low quality',
    guidance: 5,
    width: 64,
    height: 64,
    sizes: { originalSize: [512, 768], cropTopLeft: [32, 64], targetSize: [1024, 1024] },
  },
  {
    name: 'sdxl_pipeline_euler_g3_96x64_empty_negative_negsizes',
    prompt: 'a watercolor lighthouse on a cliff',
    negative: '',
    guidance: 3,
    width: 64,
    height: 96,
    sizes: { negativeOriginalSize: [256, 256], negativeCropTopLeft: [0, 0], negativeTargetSize: [96, 64] },
  },
];

describe('SDXL pipelines against diffusers (Euler, 6 steps)', () => {
  for (const p of PIPELINES) {
    it(`${p.name}: latents after every step and the UNet's inputs within 1e-4`, async () => {
      const r = reference(p.name);
      const perStep: Float32Array[] = [];
      let received: Record<string, Float32Array> = {};
      const unet = await sd.unet();
      const run = unet.run.bind(unet);
      // Records the first step's feeds: what the UNet received, as the reference's hooks did.
      unet.run = async (feeds) => {
        if (!perStep.length) received = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, (v as { data: Float32Array }).data]));
        return run(feeds);
      };
      try {
        const result = await generate(sd, {
          prompts: [p.prompt],
          negativePrompt: p.negative,
          guidance: p.guidance,
          width: p.width,
          height: p.height,
          steps: 6,
          scheduler: 'euler',
          latents: r.floats('initial_latents'),
          ...p.sizes,
          onStep: (s) => perStep.push(s.latents.slice()),
        });
        if (r.has('unet_time_ids')) {
          expect(maxAbsDiff(received.encoder_hidden_states, r.floats('unet_encoder_hidden_states'))).toBeLessThan(1e-5);
          expect(maxAbsDiff(received.text_embeds, r.floats('unet_text_embeds'))).toBeLessThan(1e-5);
          expect([...received.time_ids]).toEqual([...r.floats('unet_time_ids')]);
        } else expect([...received.time_ids]).toEqual([72, 72, 0, 0, 72, 72, 72, 72, 0, 0, 72, 72]);
        const expected = r.floats('latents_after_each_step');
        const n = expected.length / 6;
        const errs = perStep.map((l, i) => maxAbsDiff(l, expected.subarray(i * n, (i + 1) * n)));
        const final = maxAbsDiff(result.latents, r.floats('latents_out'));
        console.log(`${p.name}: per-step max |Δ| ${errs.map((e) => e.toExponential(1)).join(' ')}, final ${final.toExponential(2)}`);
        expect(Math.max(...errs, final)).toBeLessThan(1e-4);
        if (p.name === 'sdxl_pipeline_euler_g5') {
          // The picture: diffusers' decode of latents / 0.13025, mapped to [0, 1].
          const want = r.floats('decoded_raw').map((x) => Math.min(1, Math.max(0, x / 2 + 0.5)));
          const decoded = await sd.vaeRunner.decodeLatents(result.latents, result.shape);
          const err = maxAbsDiff(decoded.data, want);
          console.log(`${p.name}: decoded image max |Δ| ${err.toExponential(2)}`);
          expect(err).toBeLessThan(1e-3);
        }
      } finally {
        unet.run = run;
      }
    });
  }
});

describe('editing and img2img on SDXL (the added conditions reach every UNet graph)', () => {
  const noise = () => reference('sdxl_pipeline_euler_g5').floats('initial_latents');
  const plain = (prompt: string) => generate(sd, { prompts: [prompt], negativePrompt: '', guidance: 5, width: 64, height: 64, steps: 6, scheduler: 'euler', latents: noise() });

  it("Prompt-to-Prompt: the source row is the source prompt's own picture; the word swap changes the edited row", async () => {
    const result = await edit(sd, { source: 'a photo of a cat', target: 'a photo of a dog', crossReplace: 0.8, selfReplace: 0.4, guidance: 5, width: 64, height: 64, steps: 6, scheduler: 'euler', latents: noise(), attentionMaps: true });
    const half = result.latents.length / 2;
    const source = await plain('a photo of a cat');
    const target = await plain('a photo of a dog');
    expect(maxAbsDiff(result.latents.subarray(0, half), source.latents)).toBeLessThan(1e-4);
    // The edit takes the source's attention for most steps: it ends nearer the source than the plain target picture does.
    const edited = result.latents.subarray(half);
    expect(maxAbsDiff(edited, source.latents)).toBeLessThan(maxAbsDiff(target.latents, source.latents));
    expect(result.attention!.tokens.map((t) => t.token)).toEqual(['a', 'photo', 'of', 'a', 'dog']);
  });

  it('cross-attention maps: one normalised map per prompt token over the latent grid', async () => {
    const result = await crossAttentionMaps(sd, { prompt: 'a photo of a cat', guidance: 5, width: 64, height: 64, steps: 6, scheduler: 'euler', latents: noise() });
    const source = await plain('a photo of a cat');
    expect(maxAbsDiff(result.latents, source.latents)).toBeLessThan(1e-4);
    expect(result.tokens.map((t) => t.token)).toEqual(['a', 'photo', 'of', 'a', 'cat']);
    for (const t of result.tokens) expect(t.map.length).toBe(result.mapHeight * result.mapWidth);
    expect(result.tokens.every((t) => t.map.every((v) => v >= 0 && v <= 1))).toBe(true);
  });

  it('size conditioning on a model without added conditions is refused by name before any work', async () => {
    const tinySd = StableDiffusion.load(TINY_SD);
    await expect(generate(tinySd, { prompts: ['x'], steps: 1, width: 64, height: 64, originalSize: [512, 512] })).rejects.toThrow(/originalSize: size conditioning is SDXL's; tiny-sd is not an SDXL model/);
  });

  it('img2img runs the last ⌊steps · strength⌋ steps from the encoded picture', async () => {
    const start = await plain('a photo of a cat');
    const steps: number[] = [];
    const result = await generate(sd, { prompts: ['a photo of a cat'], guidance: 5, width: 64, height: 64, steps: 6, scheduler: 'euler', initImage: start.images[0], strength: 0.5, seed: 3, onStep: (p) => steps.push(p.timestep) });
    expect(steps).toHaveLength(3);
    expect(result.latents.every(Number.isFinite)).toBe(true);
    expect(maxAbsDiff(result.latents, start.latents)).toBeGreaterThan(1e-3);
  });
});
