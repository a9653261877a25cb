// The Generate form kept in localStorage across reloads, without a browser: a Map stands in for
// the storage, and one that refuses large entries for a full quota.

import { describe, expect, it } from 'vitest';
import { newControlUnit } from '../../src/web/controlnet-settings.ts';
import { type GenerateForm, INITIAL_FORM } from '../../src/web/generate-settings.ts';
import { emptyMask, paintSegment } from '../../src/web/mask.ts';
import { STORAGE_KEY, loadSettings, saveSettings } from '../../src/web/saved-settings.ts';

function memoryStorage(limit = Infinity) {
  const items = new Map<string, string>();
  return {
    items,
    getItem: (key: string) => items.get(key) ?? null,
    setItem: (key: string, value: string) => {
      if (value.length > limit) throw new DOMException('quota exceeded', 'QuotaExceededError');
      items.set(key, value);
    },
  };
}

const mask = emptyMask(64, 64);
paintSegment(mask, { x: 10, y: 10 }, { x: 40, y: 30 }, 5, 1);
const photo = { name: 'upload-photo.png', url: `data:image/png;base64,${'A'.repeat(4000)}` };
const form: GenerateForm = {
  ...INITIAL_FORM,
  prompt: 'a red bench',
  model: 'tiny-sd-inpaint',
  width: NaN,
  height: 64,
  strength: 0.8,
  dtype: 'q8',
  sizeConditioning: { originalSize: { width: 1024, height: 768 }, cropTopLeft: { top: 0, left: 32 }, negativeOriginalSize: { width: 512, height: 512 }, negativeTargetSize: { width: 1024, height: 1024 } },
  initImage: photo,
  mask,
  maskBlur: 2,
  inpaintFill: 'latent-noise',
  outpaint: { left: 8, right: 0, top: 0, bottom: 16 },
  controlnets: [{ ...newControlUnit('tiny-controlnet'), image: { name: 'job-1-1.png', url: '/api/v1/images/job-1-1.png' }, preprocess: 'canny', cannyHigh: 150 }],
};

describe('saved Generate settings (Studio)', () => {
  it('a reload gets back the form: the mask, inpainting, outpaint margins, ControlNet units and pictures', () => {
    const storage = memoryStorage();
    saveSettings(storage, { form, sizeTouched: true, samplingTouched: true });
    const loaded = loadSettings(storage);
    expect(loaded.sizeTouched).toBe(true);
    expect(loaded.samplingTouched).toBe(true);
    expect(loaded.form).toEqual(form); // NaN width included: an emptied box stays empty
  });

  it('leaves out what cannot come back: blob: URLs always, the pictures when the quota is full', () => {
    const storage = memoryStorage(2000);
    saveSettings(storage, { form: { ...form, initImage: { name: 'upload-x.png', url: 'blob:http://x/1' } }, sizeTouched: false, samplingTouched: false });
    expect(loadSettings(storage).form.initImage).toBeUndefined();
    saveSettings(storage, { form, sizeTouched: false, samplingTouched: false });
    const loaded = loadSettings(storage).form;
    expect(loaded.initImage).toBeUndefined();
    expect(loaded.controlnets[0].image).toBeUndefined();
    expect(loaded).toMatchObject({ prompt: 'a red bench', maskBlur: 2, controlnets: [{ model: 'tiny-controlnet', cannyHigh: 150 }] });
    expect(loaded.mask).toEqual(mask);
  });

  it('takes only what has the right type from an old or edited entry', () => {
    const storage = memoryStorage();
    storage.items.set(STORAGE_KEY, JSON.stringify({ prompt: 42, steps: 'many', guidance: 3, dtype: 'fp8', loras: { ink: 'x' }, embeddings: ['cat-toy'], mask: '3x3:zz', sizeConditioning: { originalSize: { width: 1024 }, targetSize: { width: 512, height: 512 } }, controlnets: [{ model: 'tiny-controlnet', weight: 'heavy' }, 7] }));
    const { form: loaded } = loadSettings(storage);
    expect(loaded).toMatchObject({ prompt: '', steps: 20, guidance: 3, dtype: 'fp32', loras: {}, embeddings: ['cat-toy'], mask: undefined, sizeConditioning: { targetSize: { width: 512, height: 512 } } });
    expect(loaded.sizeConditioning).not.toHaveProperty('originalSize');
    expect(loaded.controlnets).toEqual([newControlUnit('tiny-controlnet')]);
    storage.items.set(STORAGE_KEY, '{not json');
    expect(loadSettings(storage)).toEqual({ form: INITIAL_FORM, sizeTouched: false, samplingTouched: false });
  });
});
