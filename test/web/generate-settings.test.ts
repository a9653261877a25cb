// The Generate form as params, from a finished job ("use these settings") and from A1111 text,
// with inpainting and ControlNet units checked against the server's own schema and names.

import { describe, expect, it } from 'vitest';
import { formatParameters } from '../../src/io/parameters.ts';
import { controlNetLabels } from '../../src/pipelines/controlnet.ts';
import { INPAINT_FILLS, MASK_BLUR, OUTPAINT_SIDES } from '../../src/pipelines/inpaint.ts';
import { jobSchemas } from '../../src/server/schemas.ts';
import { ApiError, type Job } from '../../src/web/api.ts';
import { controlUnitErrors, controlUnitParams, newControlUnit } from '../../src/web/controlnet-settings.ts';
import { fieldErrors, jobErrors } from '../../src/web/form.ts';
import { INITIAL_FORM, INPAINT_FILL_LABELS, OUTPAINT_LABELS, formToParams, jobSeed, jobToForm, parametersToForm, settingsLine } from '../../src/web/generate-settings.ts';
import { emptyMask, paintSegment } from '../../src/web/mask.ts';

const form = { ...INITIAL_FORM, prompt: 'red apple', model: 'default', width: 32, height: 32 };

describe('generate settings (Studio)', () => {
  it('leaves unset numbers and a random seed to the server; fixed and last seeds are sent', () => {
    // No sampler by default: the model's own runs, as with `nuri generate`.
    expect(formToParams({ ...form, steps: NaN }, 7)).toEqual({ prompt: 'red apple', model: 'default', guidance: 7.5, width: 32, height: 32, batch: 1 });
    expect(formToParams({ ...form, scheduler: 'euler' }, 7).scheduler).toBe('euler');
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
    const { scheduler: _, ...ownSampler } = params;
    expect(jobToForm({ ...job, params: ownSampler }, { ...form, scheduler: 'lms' }).scheduler).toBe('');
  });

  it('shows and restores the steps, sampler and guidance a job left to the server, from its infotext', () => {
    const infotexts = [formatParameters({ prompt: 'red apple', steps: 4, sampler: 'LCM', guidance: 8.5, seed: 3, width: 64, height: 64, model: 'lcm' })];
    const job = { id: 'j', type: 'generate', status: 'completed', progress: { step: 4, total: 4 }, images: [], error: null, info: { seeds: [3], infotexts, width: 64, height: 64 }, params: { prompt: 'red apple', model: 'lcm' } } as unknown as Job;
    expect(settingsLine(job)).toBe('seed 3 · 4 steps · LCM · CFG 8.5 · 64×64 · lcm');
    expect(jobToForm(job, form)).toMatchObject({ steps: 4, guidance: 8.5, scheduler: '' });
    // What the job asked for wins over the record; a job still queued has no infotext.
    expect(settingsLine({ ...job, params: { ...job.params, steps: 6, scheduler: 'ddim' } })).toBe('seed 3 · 6 steps · DDIM · CFG 8.5 · 64×64 · lcm');
    expect(settingsLine({ ...job, status: 'queued', info: {} })).toBe('lcm');
  });

  it("reads AUTOMATIC1111's parameters, keeping what this server cannot do out of the form", () => {
    const text = formatParameters({ prompt: 'a castle', negativePrompt: 'fog', steps: 30, sampler: 'DPM++ 2M Karras', guidance: 6, seed: 5, width: 512, height: 768, model: 'sd15' });
    const { form: read, notes } = parametersToForm(text, form, ['default']);
    expect(read).toMatchObject({ prompt: 'a castle', negativePrompt: 'fog', steps: 30, scheduler: 'dpmpp-2m-karras', guidance: 6, seedMode: 'fixed', seed: 5, width: 512, height: 768, model: 'default' });
    expect(notes).toEqual(['model "sd15" is not on this server; kept default']);
    expect(read.dtype).toBe('fp32');
    expect(parametersToForm('x\nSteps: 3, Sampler: DPM++ SDE, Seed: 1', form, []).notes).toEqual(['sampler "DPM++ SDE" is not one of Nuri\'s; kept the model\'s own']);
  });

  it('restores the weight dtype and the SDXL size conditioning a PNG records, and sends them again', () => {
    const text = formatParameters({ prompt: 'a castle', steps: 4, dtype: 'q8', sizeConditioning: { originalSize: [512, 768], targetSize: [1024, 1024], cropTopLeft: [0, 256], negativeOriginalSize: [64, 64], negativeTargetSize: [64, 64] } });
    const { form: read, notes } = parametersToForm(text, form, ['default']);
    expect(read.dtype).toBe('q8');
    const negatives = { negativeOriginalSize: { width: 64, height: 64 }, negativeTargetSize: { width: 64, height: 64 } };
    expect(read.sizeConditioning).toEqual({ originalSize: { width: 768, height: 512 }, targetSize: { width: 1024, height: 1024 }, cropTopLeft: { top: 0, left: 256 }, ...negatives });
    expect(notes).toEqual(['SDXL original size 768x512, target size 1024x1024, crop top 0, left 256, negative original size 64x64, negative target size 64x64']);
    const params = formToParams(read, undefined);
    expect(params).toMatchObject({ dtype: 'q8', originalSize: { width: 768, height: 512 }, targetSize: { width: 1024, height: 1024 }, cropTopLeft: { top: 0, left: 256 }, ...negatives });
    // A job's params restore the same way ("use these settings"); an fp32 job sends no dtype.
    const job = { id: 'j', type: 'generate', status: 'completed', progress: { step: 4, total: 4 }, images: [], error: null, info: {}, params } as unknown as Job;
    expect(formToParams(jobToForm(job, form), undefined)).toMatchObject(params);
    expect(formToParams(form, undefined).dtype).toBeUndefined();
    expect(parametersToForm('x\nSteps: 3, Weight dtype: fp8', form, []).notes).toEqual(['weight dtype "fp8" is not one of Nuri\'s; kept fp32']);
  });

  it('restores the VAE a PNG names when the server has it (A1111 names the file), and sends it as the job\'s vae', () => {
    const vaes = ['vae-ft-mse', 'taesd'];
    const a1111 = parametersToForm('a castle\nSteps: 20, Sampler: Euler, VAE: vae-ft-mse.safetensors', form, [], [], vaes);
    expect(a1111.form.vae).toBe('vae-ft-mse');
    expect(a1111.notes).toEqual([]);
    expect(formToParams(a1111.form, undefined).vae).toBe('vae-ft-mse');
    const missing = parametersToForm('a castle\nSteps: 20, VAE: orangemix.vae.pt', { ...form, vae: 'taesd' }, [], [], vaes);
    expect(missing.form.vae).toBe('');
    expect(missing.notes).toEqual(['VAE "orangemix.vae.pt" is not on this server; the model\'s own decodes']);
    // A picture made with the model's own VAE says none, and sends none.
    const own = parametersToForm('a castle\nSteps: 20', { ...form, vae: 'taesd' }, [], [], vaes).form;
    expect(own.vae).toBe('');
    expect(formToParams(own, undefined)).not.toHaveProperty('vae');
    const job = { id: 'j', type: 'generate', status: 'completed', progress: { step: 1, total: 1 }, images: [], error: null, info: {}, params: { prompt: 'x', vae: 'taesd' } } as unknown as Job;
    expect(jobToForm(job, form).vae).toBe('taesd');
  });
});

describe('inpainting and ControlNet settings (Studio)', () => {
  const schema = jobSchemas().generate;
  const painted = (() => {
    const mask = emptyMask(32, 32);
    paintSegment(mask, { x: 4, y: 4 }, { x: 20, y: 4 }, 3, 1);
    return mask;
  })();
  const unit = { ...newControlUnit('tiny-controlnet'), image: { name: 'upload-edges.png', url: 'data:' }, preprocess: 'canny' as const, cannyLow: 50, weight: 0.8, end: 0.5 };
  const inpaint = { ...form, initImage: { name: 'upload-photo.png', url: 'data:' }, strength: 0.75, mask: painted, maskBlur: 8, inpaintFill: 'latent-noise' as const };

  it("sends the mask's upload, its blur and fill, the outpaint margins and the units, as the server's schema takes them", () => {
    const params = formToParams({ ...inpaint, outpaint: { left: 16, right: 0, top: NaN, bottom: 8 }, controlnets: [unit] }, undefined, 'upload-mask.png');
    expect(params).toMatchObject({ initImage: 'upload-photo.png', strength: 0.75, mask: 'upload-mask.png', maskBlur: 8, inpaintFill: 'latent-noise', outpaint: { left: 16, bottom: 8 } });
    expect(params.controlnet).toEqual([{ model: 'tiny-controlnet', image: 'upload-edges.png', fit: 'fill', weight: 0.8, start: 0, end: 0.5, preprocess: 'canny', cannyLow: 50, cannyHigh: 200 }]);
    expect(schema.safeParse(params).success).toBe(true);
    // Nothing painted and no margins: plain img2img, and no blur or fill the server would refuse.
    const plain = formToParams({ ...inpaint, mask: emptyMask(32, 32) }, undefined, 'upload-mask.png');
    expect(plain).not.toHaveProperty('mask');
    expect(plain).not.toHaveProperty('maskBlur');
    expect(plain).not.toHaveProperty('inpaintFill');
    expect(schema.safeParse(plain).success).toBe(true);
    // No starting picture: the mask stays on the page.
    expect(formToParams({ ...inpaint, initImage: undefined }, undefined, 'upload-mask.png')).not.toHaveProperty('mask');
    // "Only masked" with its padding; not with an empty mask, nor when outpainting (the server refuses both).
    const only = formToParams({ ...inpaint, onlyMasked: true, onlyMaskedPadding: 16 }, undefined, 'upload-mask.png');
    expect(only.onlyMasked).toEqual({ padding: 16 });
    expect(schema.safeParse(only).success).toBe(true);
    expect(formToParams({ ...inpaint, onlyMasked: true, mask: emptyMask(32, 32) }, undefined, 'upload-mask.png')).not.toHaveProperty('onlyMasked');
    expect(formToParams({ ...inpaint, onlyMasked: true, outpaint: { left: 16, right: 0, top: 0, bottom: 0 } }, undefined, 'upload-mask.png')).not.toHaveProperty('onlyMasked');
  });

  it("starts from the server's own defaults and names", () => {
    const parsed = schema.parse({ prompt: 'x', controlnet: [{ model: 'tiny-controlnet', image: 'upload-edges.png' }] });
    expect(controlUnitParams({ ...newControlUnit('tiny-controlnet'), image: { name: 'upload-edges.png', url: '' } })).toEqual(parsed.controlnet[0]);
    expect(INITIAL_FORM.maskBlur).toBe(MASK_BLUR);
    expect(Object.keys(INPAINT_FILL_LABELS).sort()).toEqual([...INPAINT_FILLS].sort());
    expect(Object.keys(OUTPAINT_LABELS)).toEqual([...OUTPAINT_SIDES]);
  });

  it('"use these settings" brings back the starting picture, fill, blur, margins and units (uploads and results by their URLs)', () => {
    const params = { prompt: 'a bench', initImage: 'upload-photo.png', mask: 'upload-mask.png', maskBlur: 2, inpaintFill: 'fill', outpaint: { top: 64 }, controlnet: [{ ...controlUnitParams(unit), image: 'job-1-1.png' }, controlUnitParams(unit)] };
    const job = { id: 'j', type: 'generate', status: 'completed', progress: { step: 1, total: 1 }, images: [], error: null, info: {}, params } as Job;
    const back = jobToForm(job, form);
    expect(back).toMatchObject({ maskBlur: 2, inpaintFill: 'fill', onlyMasked: false, outpaint: { left: 0, right: 0, top: 64, bottom: 0 } });
    expect(jobToForm({ ...job, params: { ...params, outpaint: undefined, onlyMasked: { padding: 8 } } }, form)).toMatchObject({ onlyMasked: true, onlyMaskedPadding: 8 });
    expect(back.controlnets.map((u) => u.image)).toEqual([{ name: 'job-1-1.png', url: '/api/v1/images/job-1-1.png' }, { name: 'upload-edges.png', url: '/api/v1/images/upload-edges.png' }]);
    // The starting picture comes back too (its mask, painted on the page, does not).
    expect(back.initImage).toEqual({ name: 'upload-photo.png', url: '/api/v1/images/upload-photo.png' });
    expect(back.mask).toBeUndefined();
    // A txt2img job's settings make a txt2img job again, whatever picture the page held.
    expect(jobToForm({ ...job, params: { prompt: 'a bench' } }, back).initImage).toBeUndefined();
    expect(back.controlnets[1]).toMatchObject({ model: 'tiny-controlnet', preprocess: 'canny', cannyLow: 50, weight: 0.8, end: 0.5 });
  });

  it("reads inpainting's and the ControlNet extension's fields from AUTOMATIC1111's text, and Nuri's own", () => {
    const a1111 = formatParameters({
      prompt: 'a bench',
      steps: 20,
      sampler: 'Euler a',
      guidance: 7,
      seed: 1,
      width: 512,
      height: 512,
      denoisingStrength: 0.75,
      extra: {
        'Mask blur': 8,
        'Masked content': 'latent nothing',
        'Inpaint area': 'Only masked',
        'Masked area padding': 24,
        'ControlNet 0': 'Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.6, Resize Mode: Crop and Resize, Low Vram: False, Processor Res: 512, Threshold A: 64, Threshold B: 128, Guidance Start: 0.1, Guidance End: 0.9, Pixel Perfect: False, Control Mode: Balanced',
        'ControlNet 1': 'Module: openpose_full, Model: tiny-controlnet, Weight: 1, Resize Mode: Just Resize, Guidance Start: 0, Guidance End: 1',
      },
    });
    const { form: read, notes } = parametersToForm(a1111, form, ['default'], ['tiny-controlnet']);
    expect(read).toMatchObject({ strength: 0.75, maskBlur: 8, inpaintFill: 'latent-nothing', onlyMasked: true, onlyMaskedPadding: 24 });
    expect(read.controlnets).toEqual([
      { ...newControlUnit('tiny-controlnet'), preprocess: 'canny', cannyLow: 64, cannyHigh: 128, weight: 0.6, start: 0.1, end: 0.9, fit: 'cover' },
      { ...newControlUnit('tiny-controlnet'), fit: 'fill' },
    ]);
    expect(notes).toEqual([
      'ControlNet 0: model "control_v11p_sd15_canny" is not on this server; chose tiny-controlnet',
      'ControlNet 0: choose its control image',
      'ControlNet 1: preprocessor "openpose_full" is not one of Nuri\'s (none, canny); give it a ready-made control image',
      'ControlNet 1: choose its control image',
    ]);

    // What the server writes (runner.ts: controlNetLabels) comes back as it was sent.
    const nuri = formatParameters({ prompt: 'a bench', steps: 2, extra: controlNetLabels([{ model: 'tiny-controlnet', weight: 0.8, start: 0, end: 0.5, preprocess: 'canny', cannyLow: 50, cannyHigh: 200 }]) });
    const again = parametersToForm(nuri, form, ['default'], ['tiny-controlnet']).form.controlnets[0];
    expect(controlUnitParams({ ...again, image: unit.image })).toEqual(controlUnitParams(unit));
    const covered = formatParameters({ prompt: 'a bench', steps: 2, extra: controlNetLabels([{ model: 'tiny-controlnet', weight: 1, fit: 'cover' }]) });
    expect(parametersToForm(covered, form, ['default'], ['tiny-controlnet']).form.controlnets[0].fit).toBe('cover');
  });

  it("puts each error beside its unit's field: the server's path, or the ControlNet a failed run names", () => {
    const units = [newControlUnit('tiny-controlnet'), newControlUnit('gone')];
    const refused = fieldErrors(new ApiError('start (0.7) must be below end (0.2)', 400, 'controlnet', 'controlnet.1.start'), ['controlnet']);
    expect(refused.errors).toEqual({ controlnet: 'start (0.7) must be below end (0.2)', 'controlnet.1.start': 'start (0.7) must be below end (0.2)' });
    expect(controlUnitErrors(refused.errors, units)).toEqual({ unit: [{}, { start: 'start (0.7) must be below end (0.2)' }] });
    const failed = jobErrors({ job: { status: 'failed', error: 'ControlNet not found: /srv/models/controlnet/gone.safetensors' } }, ['controlnet', 'width']);
    expect(failed.errors).toEqual({ controlnet: 'ControlNet not found: /srv/models/controlnet/gone.safetensors' });
    expect(controlUnitErrors(failed.errors, units)).toEqual({ unit: [{}, { model: 'ControlNet not found: /srv/models/controlnet/gone.safetensors' }] });
    // A message that names no unit's model stays with the whole ControlNet section.
    expect(controlUnitErrors({ controlnet: 'ControlNet: out of memory' }, units)).toEqual({ unit: [{}, {}], general: 'ControlNet: out of memory' });
  });
});
