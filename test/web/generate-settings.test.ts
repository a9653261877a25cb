// The Generate form as params, from a finished job ("use these settings") and from A1111 text.

import { describe, expect, it } from 'vitest';
import { formatParameters } from '../../src/io/parameters.ts';
import type { Job } from '../../src/web/api.ts';
import { INITIAL_FORM, formToParams, jobSeed, jobToForm, parametersToForm } from '../../src/web/generate-settings.ts';

const form = { ...INITIAL_FORM, prompt: 'red apple', model: 'default', width: 32, height: 32 };

describe('generate settings (Studio)', () => {
  it('leaves unset numbers and a random seed to the server; fixed and last seeds are sent', () => {
    expect(formToParams({ ...form, steps: NaN }, 7)).toEqual({ prompt: 'red apple', scheduler: 'ddim', model: 'default', guidance: 7.5, width: 32, height: 32, batch: 1 });
    expect(formToParams({ ...form, seedMode: 'fixed', seed: 42 }, 7).seed).toBe(42);
    expect(formToParams({ ...form, seedMode: 'last', seed: 42 }, 7).seed).toBe(7);
    const img2img = formToParams({ ...form, loras: { ink: 0.5 }, embeddings: ['cat-toy'], initImage: { name: 'upload-1.png', url: 'blob:x' }, strength: 0.3 }, undefined);
    expect(img2img).toMatchObject({ loras: [{ name: 'ink', weight: 0.5 }], embeddings: ['cat-toy'], initImage: 'upload-1.png', strength: 0.3 });
  });

  it("round-trips a job's params through the form, with its seed fixed", () => {
    const params = { prompt: 'blue heart', negativePrompt: 'blurry', model: 'default', scheduler: 'euler-a', steps: 12, guidance: 5, seed: 99, batch: 2, loras: [{ name: 'ink', weight: 0.5 }], embeddings: [] };
    const job = { id: 'j', type: 'generate', status: 'completed', progress: { step: 12, total: 12 }, images: [], error: null, info: { width: 48, height: 40, seeds: [99, 100] }, params } as Job;
    expect(jobSeed(job)).toBe(99);
    const back = jobToForm(job, form);
    expect(back).toMatchObject({ seedMode: 'fixed', seed: 99, width: 48, height: 40 });
    expect(formToParams(back, undefined)).toEqual({ ...params, width: 48, height: 40, embeddings: undefined });
  });

  it("reads AUTOMATIC1111's parameters, keeping what this server cannot do out of the form", () => {
    const text = formatParameters({ prompt: 'a castle', negativePrompt: 'fog', steps: 30, sampler: 'DPM++ 2M Karras', guidance: 6, seed: 5, width: 512, height: 768, model: 'sd15' });
    const { form: read, notes } = parametersToForm(text, form, ['default']);
    expect(read).toMatchObject({ prompt: 'a castle', negativePrompt: 'fog', steps: 30, scheduler: 'dpmpp-2m-karras', guidance: 6, seedMode: 'fixed', seed: 5, width: 512, height: 768, model: 'default' });
    expect(notes).toEqual(['model "sd15" is not on this server; kept default']);
    expect(read.dtype).toBe('fp32');
    expect(parametersToForm('x\nSteps: 3, Sampler: DPM++ SDE, Seed: 1', form, []).notes).toEqual(['sampler "DPM++ SDE" is not one of Nuri\'s; kept ddim']);
  });

  it('restores the weight dtype and the SDXL size conditioning a PNG records, and sends them again', () => {
    const text = formatParameters({ prompt: 'a castle', steps: 4, dtype: 'q8', sizeConditioning: { originalSize: [512, 768], targetSize: [1024, 1024], cropTopLeft: [0, 256], negativeOriginalSize: [64, 64], negativeTargetSize: [64, 64] } });
    const { form: read, notes } = parametersToForm(text, form, ['default']);
    expect(read.dtype).toBe('q8');
    expect(read.sizeConditioning).toEqual({ originalSize: { width: 768, height: 512 }, targetSize: { width: 1024, height: 1024 }, cropTopLeft: { top: 0, left: 256 } });
    expect(notes).toEqual(['SDXL original size 768x512, target size 1024x1024, crop top 0, left 256', expect.stringMatching(/negative size conditioning is not a server setting/)]);
    const params = formToParams(read, undefined);
    expect(params).toMatchObject({ dtype: 'q8', originalSize: { width: 768, height: 512 }, targetSize: { width: 1024, height: 1024 }, cropTopLeft: { top: 0, left: 256 } });
    // A job's params restore the same way ("use these settings"); an fp32 job sends no dtype.
    const job = { id: 'j', type: 'generate', status: 'completed', progress: { step: 4, total: 4 }, images: [], error: null, info: {}, params } as unknown as Job;
    expect(formToParams(jobToForm(job, form), undefined)).toMatchObject(params);
    expect(formToParams(form, undefined).dtype).toBeUndefined();
    expect(parametersToForm('x\nSteps: 3, Weight dtype: fp8', form, []).notes).toEqual(['weight dtype "fp8" is not one of Nuri\'s; kept fp32']);
  });
});
