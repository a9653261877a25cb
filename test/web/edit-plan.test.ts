// The Edit page's reading of a typed target, before anything runs, and the params it sends.

import { describe, expect, it } from 'vitest';
import type { Job } from '../../src/web/api.ts';
import { classifyEdit, describeEdit, editParams, photoSampling, samplingOf } from '../../src/web/edit-plan.ts';
import { failureField } from '../../src/web/form.ts';

describe('edit plan (Studio)', () => {
  it('names a word swap, a refinement and a pure re-weighting', () => {
    expect(classifyEdit('a cat riding a bike', 'a dog riding a bike')).toEqual({ kind: 'replace', swaps: [['cat', 'dog']] });
    expect(classifyEdit('a cat', 'a cat wearing a hat')).toEqual({ kind: 'refine', added: ['wearing', 'hat'], removed: [] });
    expect(classifyEdit('a  snowy\tmountain', 'a snowy mountain')).toEqual({ kind: 'reweight' });
    expect(classifyEdit('a cat', '  ')).toEqual({ kind: 'empty' });
    expect(describeEdit(classifyEdit('cat face', 'dog face'))).toBe('Word swap: cat → dog.');
    expect(describeEdit(classifyEdit('a red cat', 'a cat'))).toBe('Refinement: removes red.');
  });

  it('sends refine for a refinement, and only the weights that change a word of the target', () => {
    const settings = { prompt: 'a cat', target: 'a fluffy cat', crossReplace: 0.8, selfReplace: 0.4, reweight: { fluffy: 2, cat: 1, dog: 3 }, localBlend: ['cat'] };
    expect(editParams(settings, { seed: 4, steps: 6 })).toEqual({
      seed: 4,
      steps: 6,
      prompt: 'a cat',
      target: 'a fluffy cat',
      refine: true,
      crossReplace: 0.8,
      selfReplace: 0.4,
      attentionMaps: true,
      reweight: { fluffy: 2 },
      localBlend: ['cat'],
    });
    expect(editParams({ ...settings, target: 'a dog', reweight: {}, localBlend: [] }, {})).not.toHaveProperty('reweight');
    // The carry goes with weights, and only when the page set it (else the model's nuri.json decides).
    expect(editParams(settings, {})).not.toHaveProperty('reweightCarry');
    expect(editParams({ ...settings, reweightCarry: false }, {})).toMatchObject({ reweight: { fluffy: 2 }, reweightCarry: false });
    expect(editParams({ ...settings, reweight: {}, reweightCarry: true }, {})).not.toHaveProperty('reweightCarry');
  });

  it("places the server's reasons beside the control they are about", () => {
    expect(failureField('a word swap needs prompts with the same number of tokens: "cat face" has 2, "hippopotamus face" has 4 (use refine)')).toBe('target');
    expect(failureField('reweight dog: "dog" is not a word of the prompt "a cat"')).toBe('reweight');
    expect(failureField('local-blend: "x" is a word of neither "a" nor "b"')).toBe('localBlend');
    expect(failureField('width and height must be multiples of 16 for this model, got 48×40')).toBe('width');
    expect(failureField('out of memory')).toBeUndefined();
  });

  it('remakes a result with everything that drew it, and inverts an img2img result instead', () => {
    const job = (params: Record<string, unknown>): Job => ({ id: 'job-1', type: 'generate', status: 'completed', progress: { step: 4, total: 4 }, images: ['/api/v1/images/job-1-1.png'], error: null, info: { seeds: [7] }, params });
    const photo = { steps: 20, guidance: 7.5, nullTextSteps: 10 };
    const loras = [{ name: 'sparkle', weight: 0.8 }];
    const made = { prompt: 'a cat', steps: 6, scheduler: 'euler-a', guidance: 5, eta: 0.5, loras, embeddings: ['cat-toy'], batch: 2 };
    expect(samplingOf({ kind: 'result', job: job(made), url: '/api/v1/images/job-1-1.png' }, photo)).toEqual({ steps: 6, scheduler: 'euler-a', guidance: 5, eta: 0.5, loras, embeddings: ['cat-toy'], seed: 7 });
    const img2img = { ...made, initImage: 'upload-1.png', strength: 0.6 };
    expect(samplingOf({ kind: 'result', job: job(img2img), url: '/api/v1/images/job-1-1.png' }, photo)).toEqual({ loras, embeddings: ['cat-toy'], image: 'job-1-1.png', scheduler: 'ddim', ...photo });
  });

  it("inverts a picture at the model's own guidance where it guides, else at 7.5", () => {
    expect(photoSampling({ defaultGuidance: 5 })).toEqual({ steps: 20, guidance: 5, nullTextSteps: 10 }); // the default model's nuri.json
    expect(photoSampling({})).toEqual({ steps: 20, guidance: 7.5, nullTextSteps: 10 });
    expect(photoSampling(undefined).guidance).toBe(7.5);
    expect(photoSampling({ defaultGuidance: 1 }).guidance).toBe(7.5); // an LCM-LoRA's: no unconditional pass to invert with
  });
});

describe('edits of weighted prompts', () => {
  it('name the words of the plain text, as the server does', () => {
    expect(classifyEdit('a (cat:1.3) on [a] mat', 'a (dog:1.3) on a mat')).toEqual({ kind: 'replace', swaps: [['cat', 'dog']] });
    expect(classifyEdit('a ((cat))', 'a cat')).toEqual({ kind: 'reweight' });
  });
});
