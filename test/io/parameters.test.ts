import { describe, expect, it } from 'vitest';
import { formatParameters, parseParameters, type GenerationParameters } from '../../src/io/parameters.ts';

describe('formatParameters', () => {
  it('writes the AUTOMATIC1111 layout', () => {
    const text = formatParameters({
      prompt: 'a photo of a cat',
      negativePrompt: 'blurry',
      steps: 20,
      sampler: 'DDIM',
      guidance: 7.5,
      seed: 42,
      width: 512,
      height: 768,
      model: 'nuri-emoji',
      extra: { 'Clip skip': 2 },
    });
    expect(text).toBe(
      'a photo of a cat\nNegative prompt: blurry\n' +
        'Steps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 512x768, Model: nuri-emoji, Clip skip: 2',
    );
  });

  it('quotes values holding a comma, colon or newline; leaves out what is not given', () => {
    const text = formatParameters({ prompt: 'p', steps: 5, model: 'sd: v1, pruned', extra: { Note: 'a\nb' } });
    expect(text).toBe('p\nSteps: 5, Model: "sd: v1, pruned", Note: "a\\nb"');
    expect(formatParameters({ prompt: 'just a prompt' })).toBe('just a prompt');
  });

  it('writes the weight dtype unless fp32, and SDXL sizes as WxH and the crop as top,left', () => {
    expect(formatParameters({ prompt: 'p', steps: 2, dtype: 'fp32' })).toBe('p\nSteps: 2');
    const text = formatParameters({ prompt: 'p', steps: 2, dtype: 'q8', sizeConditioning: { originalSize: [512, 768], cropTopLeft: [0, 256] } });
    expect(text).toBe('p\nSteps: 2, Weight dtype: q8, Original size: 768x512, Crop top left: "0,256"');
    // A value that does not read as a size stays an unknown field.
    expect(parseParameters('p\nSteps: 2, Original size: big, Sampler: Euler')).toMatchObject({ extra: { 'Original size': 'big' } });
    expect(() => formatParameters({ prompt: 'p', extra: { 'Weight dtype': 'q8' } })).toThrow('bad extra key');
  });

  it('rejects extra keys that would not parse back or shadow known ones', () => {
    expect(() => formatParameters({ prompt: 'p', extra: { Steps: 3 } })).toThrow('bad extra key');
    expect(() => formatParameters({ prompt: 'p', extra: { 'a:b': 3 } })).toThrow('bad extra key');
  });
});

describe('parseParameters', () => {
  const cases: Record<string, GenerationParameters> = {
    full: {
      prompt: 'emoji of a smiling cat, flat style',
      negativePrompt: 'text, watermark',
      steps: 30,
      sampler: 'Euler a',
      guidance: 7,
      seed: 3141592653,
      width: 64,
      height: 64,
      modelHash: 'abc123',
      model: 'nuri-emoji',
      denoisingStrength: 0.75,
      extra: { 'Clip skip': '2', Schedule: 'karras, "quoted"', Lines: 'one\ntwo' },
    },
    'prompt only': { prompt: 'a dog' },
    'steps only': { prompt: 'a dog', steps: 1 },
    'multi-line prompts': { prompt: 'line one\nline two: more', negativePrompt: 'bad\nworse', seed: 0, steps: 4, sampler: 'PNDM' },
    'negative without settings': { prompt: 'a', negativePrompt: 'b' },
    'q8 weights and SDXL size conditioning': {
      prompt: 'a castle',
      steps: 20,
      dtype: 'q8',
      sizeConditioning: { originalSize: [512, 768], targetSize: [1024, 1024], cropTopLeft: [0, 256], negativeOriginalSize: [256, 256], negativeTargetSize: [512, 512], negativeCropTopLeft: [8, 16] },
    },
  };
  for (const [name, parameters] of Object.entries(cases)) {
    it(`inverts formatParameters: ${name}`, () => {
      expect(parseParameters(formatParameters(parameters))).toEqual(parameters);
    });
  }

  it('reads text written by the web UI', () => {
    const text =
      'masterpiece, (cat:1.2), <lora:emoji:0.8>\n' +
      'Negative prompt: (worst quality:1.4), lowres\n' +
      'Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.0, Seed: 2179987202, Size: 768x512, ' +
      'Model hash: 93b79e09ed, Model: anything-v4.5, Clip skip: 2, Lora hashes: "emoji: 1a2b3c", Version: v1.6.0\r\n';
    expect(parseParameters(text)).toEqual({
      prompt: 'masterpiece, (cat:1.2), <lora:emoji:0.8>',
      negativePrompt: '(worst quality:1.4), lowres',
      steps: 25,
      sampler: 'DPM++ 2M',
      guidance: 7,
      seed: 2179987202,
      width: 768,
      height: 512,
      modelHash: '93b79e09ed',
      model: 'anything-v4.5',
      extra: { 'Schedule type': 'Karras', 'Clip skip': '2', 'Lora hashes': 'emoji: 1a2b3c', Version: 'v1.6.0' },
    });
  });

  it('keeps a last prompt line with a few colons as prompt text', () => {
    expect(parseParameters('a portrait\nstyle: oil, mood: calm')).toEqual({ prompt: 'a portrait\nstyle: oil, mood: calm' });
  });
});
