// Generate: txt2img, img2img, inpainting and outpainting (a mask painted over the starting image)
// and ControlNet units, with every setting the server takes, live progress and previews, and the
// gallery of past results. A PNG dropped on the page fills the form from its parameters; the form
// is kept in the browser across reloads.

import { useEffect, useRef, useState } from 'preact/hooks';
import { type Catalogue, type Job, imageName, uploadFile } from '../api.ts';
import { Field, ModelField, NumberInput } from '../components/field.tsx';
import { Gallery } from '../components/gallery.tsx';
import { ControlNetUnits } from '../components/controlnet-units.tsx';
import { ImageBox } from '../components/image-box.tsx';
import { InpaintFields } from '../components/inpaint-fields.tsx';
import { ProgressPanel } from '../components/progress.tsx';
import { SeedField } from '../components/seed-field.tsx';
import { type GenerateForm, WEIGHT_DTYPES, type WeightDType, describeSizeConditioning, formToParams, hasMask, jobSeed, jobToForm, onlyMaskedArea, parametersToForm } from '../generate-settings.ts';
import { type Mask, refitMask } from '../mask.ts';
import { fileDataUrl, maskPng } from '../mask-canvas.ts';
import { loadSettings, saveSettings } from '../saved-settings.ts';
import { readPngParameters } from '../png-file.ts';
import { SAMPLER_LABELS } from '../../schedulers/labels.ts';
import type { SchedulerName } from '../../schedulers/index.ts';
import { jobErrors, submitOnEnter } from '../form.ts';
import { isBusy, useEscapeToCancel, useJob } from '../use-job.ts';
import { useImageSize } from '../image-size.ts';

const FIELDS = ['prompt', 'negativePrompt', 'model', 'scheduler', 'dtype', 'vae', 'originalSize', 'targetSize', 'cropTopLeft', 'negativeOriginalSize', 'negativeTargetSize', 'negativeCropTopLeft', 'steps', 'guidance', 'seed', 'width', 'height', 'batch', 'loras', 'embeddings', 'initImage', 'strength', 'mask', 'maskBlur', 'inpaintFill', 'onlyMasked', 'outpaint', 'controlnet'];

interface GeneratePageProps {
  catalogue: Catalogue;
  /** Opens a result in the Edit page. */
  onEdit: (job: Job, url: string) => void;
}

export function GeneratePage({ catalogue, onEdit }: GeneratePageProps) {
  const [saved] = useState(() => loadSettings(localStorage));
  const [form, setForm] = useState<GenerateForm>(saved.form);
  const set = (patch: Partial<GenerateForm>) => setForm((f) => ({ ...f, ...patch }));
  const [sizeTouched, setSizeTouched] = useState(saved.sizeTouched);
  const [samplingTouched, setSamplingTouched] = useState(saved.samplingTouched);
  // Also kept in a ref, set in the input's own handler: an effect that applies the model's defaults
  // may run after the user's input with the state of the render before it, and must not undo it.
  const touched = useRef({ size: saved.sizeTouched, sampling: saved.samplingTouched });
  const touchSize = () => ((touched.current.size = true), setSizeTouched(true));
  const touchSampling = () => ((touched.current.sampling = true), setSamplingTouched(true));
  useEffect(() => saveSettings(localStorage, { form, sizeTouched, samplingTouched }), [form, sizeTouched, samplingTouched]);
  // Errors the page finds before sending (a unit without its image, a mask that did not upload).
  const [pageErrors, setPageErrors] = useState<Record<string, string>>({});
  // The server's name of each mask already uploaded, at the size it was sent.
  const sentMasks = useRef(new WeakMap<Mask, { size: string; name: string }>());
  const sending = useRef(false);
  const [lastSeed, setLastSeed] = useState<number>();
  const [historyVersion, setHistoryVersion] = useState(0);
  const [notice, setNotice] = useState<string>();
  const { state, start, cancel } = useJob((job) => {
    if (job.status === 'completed') setLastSeed(jobSeed(job));
    setHistoryVersion((v) => v + 1);
  });
  const busy = isBusy(state);
  useEscapeToCancel(busy, cancel);

  // The model's own size until the user picks one.
  const model = catalogue.models.find((m) => m.name === form.model) ?? catalogue.models[0];
  useEffect(() => {
    // A kept model that is no longer on the server gives way to the first one.
    if (model && form.model !== model.name) set({ model: model.name });
    const size = model?.defaultSize;
    if (!sizeTouched && size) setForm((f) => (touched.current.size ? f : { ...f, width: size, height: size }));
  }, [model?.name, model?.defaultSize, sizeTouched]);
  // Likewise its steps and guidance (an LCM model's 4 steps, a folder's nuri.json), until the user picks theirs.
  useEffect(() => {
    const [steps, guidance] = [model?.defaultSteps, model?.defaultGuidance];
    if (!samplingTouched && steps && guidance !== undefined) setForm((f) => (touched.current.sampling ? f : { ...f, steps, guidance }));
  }, [model?.name, model?.defaultSteps, model?.defaultGuidance, samplingTouched]);

  const shown = state.job?.status === 'completed' ? state.job.images : [];
  const [w, h] = [Number.isFinite(form.width) ? form.width : model?.defaultSize ?? 1, Number.isFinite(form.height) ? form.height : model?.defaultSize ?? 1];
  // The mask is painted at the job's size, or at the picture's own for "Only masked".
  const initSize = useImageSize(form.initImage?.url);
  const [maskW, maskH] = onlyMaskedArea(form) && initSize ? [initSize.width, initSize.height] : [w, h];

  const server = jobErrors(state, FIELDS);
  const errors = { ...server.errors, ...pageErrors };
  const submit = async (e?: Event) => {
    e?.preventDefault();
    if (busy || sending.current) return;
    const missing = form.controlnets.findIndex((u) => !u.image);
    if (missing >= 0) return setPageErrors({ [`controlnet.${missing}.image`]: 'choose a control image for this unit' });
    setPageErrors({});
    sending.current = true;
    try {
      void start('generate', formToParams(form, lastSeed, await uploadMask()));
    } catch (error) {
      setPageErrors({ mask: `the mask could not be sent: ${(error as Error).message}` });
    } finally {
      sending.current = false;
    }
  };
  /** The painted mask as an upload (once per mask and size); undefined when nothing is painted. */
  const uploadMask = async (): Promise<string | undefined> => {
    if (!form.initImage || !form.mask || !hasMask(form)) return undefined;
    const size = `${maskW}x${maskH}`;
    const sent = sentMasks.current.get(form.mask);
    if (sent?.size === size) return sent.name;
    const name = await uploadFile(await maskPng(refitMask(form.mask, maskW, maskH, initSize)), 'mask.png');
    sentMasks.current.set(form.mask, { size, name });
    return name;
  };

  const readSettings = async (file: File) => {
    try {
      const text = await readPngParameters(file);
      if (text === undefined) return setNotice(`${file.name} has no generation parameters`);
      const { form: next, notes } = parametersToForm(text, form, catalogue.models.map((m) => m.name), catalogue.controlnets, catalogue.vaes);
      setForm(next);
      touchSize();
      touchSampling();
      setNotice([`Settings read from ${file.name}`, ...notes].join('; '));
    } catch (error) {
      setNotice(`${file.name}: ${(error as Error).message}`);
    }
  };
  const onDrop = (e: DragEvent) => {
    const file = e.dataTransfer?.files[0];
    if (!file) return;
    e.preventDefault();
    void readSettings(file);
  };
  /** Sends a picked picture; a data: URL shows it again after a reload. */
  const uploadPicture = async (file: File): Promise<{ name: string; url: string } | undefined> => {
    try {
      const [name, url] = await Promise.all([uploadFile(file, file.name), fileDataUrl(file)]);
      return { name, url };
    } catch (error) {
      setNotice(`upload failed: ${(error as Error).message}`);
      return undefined;
    }
  };
  const uploadInit = async (file: File) => {
    const initImage = await uploadPicture(file);
    // A mask belongs to the picture it was painted on.
    if (initImage) set({ initImage, mask: undefined });
  };
  return (
    <div class="page generate" onDragOver={(e) => e.preventDefault()} onDrop={onDrop}>
      <form class="panel" onSubmit={submit} noValidate aria-label="Generate settings">
        <Field label="Prompt" error={errors.prompt} hint="Enter generates; Shift+Enter for a new line">
          {(id, d) => <textarea id={id} name="prompt" rows={3} value={form.prompt} aria-describedby={d} onInput={(e) => set({ prompt: e.currentTarget.value })} onKeyDown={submitOnEnter} />}
        </Field>
        <Field label="Negative prompt" error={errors.negativePrompt}>
          {(id, d) => <textarea id={id} name="negativePrompt" rows={2} value={form.negativePrompt} aria-describedby={d} onInput={(e) => set({ negativePrompt: e.currentTarget.value })} onKeyDown={submitOnEnter} />}
        </Field>
        <div class="row">
          <ModelField label="Model" models={catalogue.models} value={form.model} error={errors.model} onChange={(model) => set({ model })} />
          <Field label="Sampler" error={errors.scheduler}>
            {(id, d) => (
              <select id={id} name="scheduler" value={form.scheduler} aria-describedby={d} onChange={(e) => set({ scheduler: e.currentTarget.value as SchedulerName | '' })}>
                <option value="">the model's own</option>
                {Object.entries(SAMPLER_LABELS).map(([name, label]) => (
                  <option key={name} value={name}>
                    {label}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label="Weights" error={errors.dtype} hint="q8: int8, quantised at load">
            {(id, d) => (
              <select id={id} name="dtype" value={form.dtype} aria-describedby={d} onChange={(e) => set({ dtype: e.currentTarget.value as WeightDType })}>
                {WEIGHT_DTYPES.map((dtype) => (
                  <option key={dtype} value={dtype}>
                    {dtype}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label="VAE" error={errors.vae} hint="decodes instead of the model's own (models folder's vae/)">
            {(id, d) => (
              <select id={id} name="vae" value={form.vae} aria-describedby={d} onChange={(e) => set({ vae: e.currentTarget.value })}>
                <option value="">the model's own</option>
                {[...new Set([...catalogue.vaes, ...(form.vae ? [form.vae] : [])])].map((name) => (
                  <option key={name} value={name}>
                    {name}
                  </option>
                ))}
              </select>
            )}
          </Field>
        </div>
        {form.sizeConditioning && (
          <p class="notice size-conditioning">
            SDXL conditioning from the picture: {describeSizeConditioning(form.sizeConditioning)}
            {sizeConditioningError(errors) && <span class="error"> ({sizeConditioningError(errors)})</span>}{' '}
            <button type="button" class="secondary" onClick={() => set({ sizeConditioning: undefined })}>
              Clear
            </button>
          </p>
        )}
        <div class="row">
          <Field label="Steps" error={errors.steps}>
            {(id, d) => <NumberInput id={id} name="steps" describedBy={d} value={form.steps} min={1} step={1} onChange={(steps) => (touchSampling(), set({ steps }))} invalid={!!errors.steps} />}
          </Field>
          <Field label="Guidance" error={errors.guidance}>
            {(id, d) => <NumberInput id={id} name="guidance" describedBy={d} value={form.guidance} min={0} step={0.5} onChange={(guidance) => (touchSampling(), set({ guidance }))} invalid={!!errors.guidance} />}
          </Field>
          <Field label="Batch" error={errors.batch}>
            {(id, d) => <NumberInput id={id} name="batch" describedBy={d} value={form.batch} min={1} step={1} onChange={(batch) => set({ batch })} invalid={!!errors.batch} />}
          </Field>
        </div>
        <div class="row">
          <Field label="Width" error={errors.width} hint={model?.defaultSize ? `the model's size: ${model.defaultSize}` : undefined}>
            {(id, d) => <NumberInput id={id} name="width" describedBy={d} value={form.width} min={8} step={8} onChange={(width) => (touchSize(), set({ width }))} invalid={!!errors.width} />}
          </Field>
          <Field label="Height" error={errors.height}>
            {(id, d) => <NumberInput id={id} name="height" describedBy={d} value={form.height} min={8} step={8} onChange={(height) => (touchSize(), set({ height }))} invalid={!!errors.height} />}
          </Field>
        </div>
        <SeedField mode={form.seedMode} seed={form.seed} lastSeed={lastSeed} error={errors.seed} onChange={(seedMode, seed) => set({ seedMode, seed })} />
        <Pickers catalogue={catalogue} form={form} set={set} errors={errors} />
        <fieldset class="init-image">
          <legend>img2img: start from an image</legend>
          {form.initImage ? (
            <div class="init-chosen">
              <ImageBox src={form.initImage.url} alt="the starting image" width={w} height={h} class="thumb" />
              <button type="button" class="secondary" onClick={() => set({ initImage: undefined })}>
                Remove starting image
              </button>
            </div>
          ) : (
            <Field label="Upload a starting image" error={errors.initImage}>
              {(id, d) => <input id={id} type="file" accept="image/png,image/jpeg,image/webp" aria-describedby={d} onChange={(e) => e.currentTarget.files?.[0] && void uploadInit(e.currentTarget.files[0])} />}
            </Field>
          )}
          <Field label={`Strength: ${form.strength}`} error={errors.strength} hint="denoising strength: how much of the starting image is replaced">
            {(id, d) => <input id={id} type="range" min={0} max={1} step={0.05} value={form.strength} disabled={!form.initImage} aria-describedby={d} onInput={(e) => set({ strength: e.currentTarget.valueAsNumber })} />}
          </Field>
          {form.initImage && <InpaintFields form={{ ...form, initImage: form.initImage }} set={set} errors={errors} width={maskW} height={maskH} picture={initSize} />}
        </fieldset>
        <ControlNetUnits controlnets={catalogue.controlnets} units={form.controlnets} onChange={(controlnets) => set({ controlnets })} upload={uploadPicture} errors={errors} />
        <Field label="Read settings from a PNG" hint="or drop a PNG made by Nuri or AUTOMATIC1111 anywhere on the page">
          {(id, d) => <input id={id} type="file" accept="image/png" aria-describedby={d} onChange={(e) => e.currentTarget.files?.[0] && void readSettings(e.currentTarget.files[0])} />}
        </Field>
        {notice && (
          <p class="notice" role="status">
            {notice}
          </p>
        )}
        {server.general && (
          <p class="error" role="alert">
            {server.general}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          Generate
        </button>
      </form>
      <div class="results">
        <ProgressPanel state={state} label="Generate" onCancel={cancel} />
        <div class="current" aria-label="Current result">
          {busy || shown.length === 0 ? (
            <ImageBox src={state.preview} alt={state.preview ? `preview at step ${state.previewStep}` : 'no image yet'} width={w} height={h} class="preview" />
          ) : (
            shown.map((url, i) => (
              <a key={url} href={url} target="_blank" rel="noopener" aria-label={`Open result ${i + 1}`}>
                <ImageBox src={url} alt={`result ${i + 1}: ${form.prompt}`} width={w} height={h} class="result" />
              </a>
            ))
          )}
        </div>
        <Gallery
          version={historyVersion}
          onUse={(job) => (setForm((f) => jobToForm(job, f)), touchSize(), touchSampling(), setNotice('Settings taken from the chosen result'))}
          onImg2img={(_, url) => set({ initImage: { name: imageName(url), url }, mask: undefined })}
          onEdit={onEdit}
        />
      </div>
    </div>
  );
}

interface PickersProps {
  catalogue: Catalogue;
  form: GenerateForm;
  set: (patch: Partial<GenerateForm>) => void;
  errors: Record<string, string>;
}

/** LoRA files (each with a weight) and Textual Inversion embeddings from the models folder. */
function Pickers({ catalogue, form, set, errors }: PickersProps) {
  const toggleLora = (name: string, on: boolean) => {
    const loras = { ...form.loras };
    if (on) loras[name] = 1;
    else delete loras[name];
    set({ loras });
  };
  // Ticking an embedding also puts its word in the prompt, where it does its work.
  const toggleEmbedding = (name: string, token: string | undefined, on: boolean) => {
    const prompt = on && token && !form.prompt.includes(token) ? `${form.prompt.trimEnd()} ${token}`.trimStart() : form.prompt;
    set({ prompt, embeddings: on ? [...form.embeddings, name] : form.embeddings.filter((e) => e !== name) });
  };
  return (
    <>
      <fieldset class="picker" aria-describedby={errors.loras ? 'loras-error' : undefined}>
        <legend>LoRA</legend>
        {catalogue.loras.length === 0 && <p class="hint">No LoRA files in the models folder.</p>}
        {catalogue.loras.map((name) => (
          <div class="pick" key={name}>
            <label>
              <input type="checkbox" checked={name in form.loras} onChange={(e) => toggleLora(name, e.currentTarget.checked)} /> {name}
            </label>
            {name in form.loras && (
              <input type="number" step={0.1} value={form.loras[name]} aria-label={`weight of LoRA ${name}`} onInput={(e) => set({ loras: { ...form.loras, [name]: e.currentTarget.valueAsNumber } })} />
            )}
          </div>
        ))}
        {errors.loras && (
          <small id="loras-error" class="error" role="alert" data-field-error>
            {errors.loras}
          </small>
        )}
      </fieldset>
      <fieldset class="picker" aria-describedby={errors.embeddings ? 'embeddings-error' : undefined}>
        <legend>Embeddings</legend>
        {catalogue.embeddings.length === 0 && <p class="hint">No Textual Inversion embeddings yet: make one in Personalise.</p>}
        {catalogue.embeddings.map(({ name, token }) => (
          <label class="pick" key={name}>
            <input type="checkbox" name="embedding" value={name} checked={form.embeddings.includes(name)} onChange={(e) => toggleEmbedding(name, token, e.currentTarget.checked)} /> {name}
            {token && token !== name && <small class="hint">({token})</small>}
          </label>
        ))}
        {errors.embeddings && (
          <small id="embeddings-error" class="error" role="alert" data-field-error>
            {errors.embeddings}
          </small>
        )}
      </fieldset>
    </>
  );
}

/** The server's complaint about any of the SDXL conditioning fields (shown beside the notice that holds them). */
function sizeConditioningError(errors: Partial<Record<string, string>>): string | undefined {
  return errors.originalSize ?? errors.targetSize ?? errors.cropTopLeft ?? errors.negativeOriginalSize ?? errors.negativeTargetSize ?? errors.negativeCropTopLeft;
}
