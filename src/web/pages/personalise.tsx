// Personalise: teach a model a subject or style from 3–20 images with Textual Inversion, LoRA or
// DreamBooth; the loss curve and sample previews while it trains; the result joins Generate's
// pickers when it is done.

import { useState } from 'preact/hooks';
import { type Catalogue, uploadFile } from '../api.ts';
import { Field, ModelField, NumberInput } from '../components/field.tsx';
import { ImageBox } from '../components/image-box.tsx';
import { LossCurve } from '../components/loss-curve.tsx';
import { ProgressPanel } from '../components/progress.tsx';
import { jobErrors } from '../form.ts';
import { isBusy, useEscapeToCancel, useJob } from '../use-job.ts';

type Method = 'textual-inversion' | 'lora' | 'dreambooth';
const METHODS: [Method, string, string][] = [
  ['textual-inversion', 'Textual Inversion', 'learns one new word; the model is unchanged'],
  ['lora', 'LoRA', 'small adapters on the attention layers'],
  ['dreambooth', 'DreamBooth', 'fine-tunes on the subject, keeping its class with prior preservation'],
];
const MIN_IMAGES = 3;
const MAX_IMAGES = 20;
const FIELDS = ['images', 'method', 'name', 'token', 'initToken', 'captions', 'instancePrompt', 'classPrompt', 'classImages', 'steps', 'loraRank', 'model'];

interface TrainingForm {
  method: Method;
  model: string;
  token: string;
  initToken: string;
  caption: string;
  instancePrompt: string;
  classPrompt: string;
  classImages: number;
  asLora: boolean;
  steps: number;
}

const INITIAL: TrainingForm = { method: 'textual-inversion', model: '', token: '<my-subject>', initToken: 'object', caption: '', instancePrompt: 'a photo of sks thing', classPrompt: '', classImages: 10, asLora: true, steps: 200 };

export function PersonalisePage({ catalogue, onTrained }: { catalogue: Catalogue; onTrained: () => void }) {
  const [form, setForm] = useState<TrainingForm>(INITIAL);
  const set = (patch: Partial<TrainingForm>) => setForm((f) => ({ ...f, ...patch }));
  const [images, setImages] = useState<{ name: string; url: string }[]>([]);
  const [uploading, setUploading] = useState(0);
  const [localErrors, setLocalErrors] = useState<Record<string, string>>({});
  const { state, start, cancel } = useJob((job) => job.status === 'completed' && onTrained());
  const busy = isBusy(state);
  useEscapeToCancel(busy, cancel);
  const server = jobErrors(state, FIELDS);
  const errors = { ...server.errors, ...localErrors };

  const addFiles = async (files: FileList | File[]) => {
    const list = [...files].filter((f) => f.type.startsWith('image/'));
    setUploading((n) => n + list.length);
    for (const file of list) {
      try {
        const name = await uploadFile(file, file.name);
        setImages((all) => [...all, { name, url: URL.createObjectURL(file) }]);
      } catch (error) {
        setLocalErrors({ images: `${file.name}: ${(error as Error).message}` });
      } finally {
        setUploading((n) => n - 1);
      }
    }
  };

  const submit = (e?: Event) => {
    e?.preventDefault();
    if (busy) return;
    if (images.length < MIN_IMAGES || images.length > MAX_IMAGES) {
      setLocalErrors({ images: `choose ${MIN_IMAGES} to ${MAX_IMAGES} images (now ${images.length})` });
      return;
    }
    setLocalErrors({});
    void start('train', trainingParams(form, images.map((i) => i.name)));
  };

  const artifacts = state.job?.status === 'completed' ? state.job.artifacts ?? [] : [];
  // A cancelled run kept its checkpoint on the server: a new job with `resume` continues it.
  const stopped = state.job?.status === 'cancelled' && state.job.type === 'train' ? state.job : undefined;
  return (
    <div class="page personalise" onDragOver={(e) => e.preventDefault()} onDrop={(e) => e.dataTransfer?.files.length && (e.preventDefault(), void addFiles(e.dataTransfer.files))}>
      <form class="panel" onSubmit={submit} noValidate aria-label="Training settings">
        <Field label={`Images (${MIN_IMAGES}–${MAX_IMAGES} of one subject or style)`} error={errors.images} hint={`${images.length} chosen${uploading ? `, ${uploading} uploading` : ''}; you can also drop them on the page`}>
          {(id, d) => <input id={id} type="file" multiple accept="image/png,image/jpeg,image/webp" aria-describedby={d} onChange={(e) => e.currentTarget.files && void addFiles(e.currentTarget.files)} />}
        </Field>
        {images.length > 0 && (
          <ul class="thumbs" aria-label="Training images">
            {images.map((image, i) => (
              <li key={image.name}>
                <ImageBox src={image.url} alt={`training image ${i + 1}`} width={1} height={1} class="thumb" />
                <button type="button" class="remove" aria-label={`remove training image ${i + 1}`} onClick={() => setImages(images.filter((x) => x !== image))}>
                  ×
                </button>
              </li>
            ))}
          </ul>
        )}
        <fieldset class="methods">
          <legend>Method</legend>
          {METHODS.map(([value, label, hint]) => (
            <label key={value} class="radio">
              <input type="radio" name="method" value={value} checked={form.method === value} onChange={() => set({ method: value })} />
              <span>
                {label} <small class="hint">— {hint}</small>
              </span>
            </label>
          ))}
        </fieldset>
        <ModelField label="Base model" models={catalogue.models} value={form.model} error={errors.model} onChange={(model) => set({ model })} />
        {form.method === 'textual-inversion' && (
          <div class="row">
            <Field label="New token" error={errors.token ?? errors.name} hint='the word you will type, e.g. "<my-cat>"'>
              {(id, d) => <input id={id} name="token" value={form.token} aria-describedby={d} onInput={(e) => set({ token: e.currentTarget.value })} />}
            </Field>
            <Field label="Starts from the word" error={errors.initToken} hint="one word close to the subject">
              {(id, d) => <input id={id} name="initToken" value={form.initToken} aria-describedby={d} onInput={(e) => set({ initToken: e.currentTarget.value })} />}
            </Field>
          </div>
        )}
        {form.method === 'lora' && (
          <Field label="Caption of every image" error={errors.captions ?? errors.name} hint="say what the images show, with a rare word for the subject">
            {(id, d) => <input id={id} name="caption" value={form.caption} aria-describedby={d} onInput={(e) => set({ caption: e.currentTarget.value })} />}
          </Field>
        )}
        {form.method === 'dreambooth' && (
          <>
            <Field label="Instance prompt" error={errors.instancePrompt ?? errors.name} hint='the subject with a rare token, e.g. "a photo of sks dog"'>
              {(id, d) => <input id={id} name="instancePrompt" value={form.instancePrompt} aria-describedby={d} onInput={(e) => set({ instancePrompt: e.currentTarget.value })} />}
            </Field>
            <div class="row">
              <Field label="Class prompt" error={errors.classPrompt} hint='e.g. "a photo of dog"; empty: no prior preservation'>
                {(id, d) => <input id={id} name="classPrompt" value={form.classPrompt} aria-describedby={d} onInput={(e) => set({ classPrompt: e.currentTarget.value })} />}
              </Field>
              <Field label="Class images" error={errors.classImages}>
                {(id, d) => <NumberInput id={id} name="classImages" describedBy={d} value={form.classImages} min={1} step={1} onChange={(classImages) => set({ classImages })} />}
              </Field>
            </div>
            <label class="check">
              <input type="checkbox" checked={form.asLora} onChange={(e) => set({ asLora: e.currentTarget.checked })} /> write a LoRA (rank 4) instead of a whole model
            </label>
          </>
        )}
        <Field label="Steps" error={errors.steps}>
          {(id, d) => <NumberInput id={id} name="steps" describedBy={d} value={form.steps} min={1} step={1} onChange={(steps) => set({ steps })} />}
        </Field>
        {server.general && (
          <p class="error" role="alert">
            {server.general}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy || uploading > 0}>
          Start training
        </button>
        {stopped && (
          <button type="button" onClick={() => void start('train', { ...stopped.params, resume: stopped.id })}>
            Resume the stopped run (step {state.step} of {state.total})
          </button>
        )}
      </form>
      <div class="results">
        <ProgressPanel state={state} label="Training" onCancel={cancel} />
        <LossCurve points={state.losses} />
        <figure class="sample">
          <ImageBox src={state.preview} alt={state.preview ? `sample at step ${state.previewStep}` : 'samples appear here while training'} width={1} height={1} />
          <figcaption>Sample while training</figcaption>
        </figure>
        {artifacts.length > 0 && (
          <p class="notice" role="status">
            Done: {artifacts.join(', ')} — {form.method === 'textual-inversion' ? `tick it among the embeddings (its word ${form.token} goes into the prompt)` : 'pick it'} on the Generate page.
          </p>
        )}
      </div>
    </div>
  );
}

/** The train job's params for the chosen method; the result's file name comes from the token or prompt. */
function trainingParams(form: TrainingForm, images: string[]): Record<string, unknown> {
  // Four sample pictures over the run (the last at its end), drawn quickly: the previews show it learn.
  const base: Record<string, unknown> = { method: form.method, images, steps: form.steps, sampleEvery: Math.max(1, Math.ceil(form.steps / 4)) };
  if (form.model) base.model = form.model;
  switch (form.method) {
    case 'textual-inversion':
      return { ...base, name: fileStem(form.token), token: form.token, initToken: form.initToken };
    case 'lora':
      return { ...base, name: fileStem(form.caption), captions: images.map(() => form.caption) };
    case 'dreambooth':
      return {
        ...base,
        name: fileStem(form.instancePrompt),
        instancePrompt: form.instancePrompt,
        ...(form.classPrompt.trim() ? { classPrompt: form.classPrompt, classImages: form.classImages } : {}),
        ...(form.asLora ? { loraRank: 4 } : {}),
      };
  }
}

/** "<my-cat>" → "my-cat": the letters, digits, _ and - the server allows in a file name. */
function fileStem(text: string): string {
  const stem = text.replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^[-_]+|[-_]+$/g, '').slice(0, 60);
  return stem || 'personal';
}
