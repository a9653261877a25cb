// Edit: Prompt-to-Prompt on a result (its seed and settings remake the source exactly) or on an
// uploaded photo (inverted first, with its own progress). The page says what kind of edit the
// target is, offers one weight slider per word and local-blend words, and shows source and edit
// side by side with one heat map per token of the edit laid over it.

import { useEffect, useState } from 'preact/hooks';
import { type Catalogue, type Job, imageName, listJobs, uploadFile } from '../api.ts';
import { Field, NumberInput } from '../components/field.tsx';
import { jobSize } from '../generate-settings.ts';
import { ImageBox } from '../components/image-box.tsx';
import { ProgressPanel } from '../components/progress.tsx';
import { type EditSettings, type EditSource, classifyEdit, describeEdit, editParams, inverted, photoSampling, samplingOf } from '../edit-plan.ts';

export type { EditSource };
import { jobErrors, submitOnEnter } from '../form.ts';
import { plainPromptWords } from '../../tokenizers/prompt-syntax.ts';
import { isBusy, useEscapeToCancel, useJob } from '../use-job.ts';
import { imageSize } from '../image-size.ts';


const FIELDS = ['prompt', 'target', 'crossReplace', 'selfReplace', 'reweight', 'reweightCarry', 'localBlend', 'steps', 'guidance', 'nullTextSteps', 'image', 'width', 'height', 'model'];

interface EditPageProps {
  catalogue: Catalogue;
  source?: EditSource;
  onSource: (source: EditSource) => void;
}

const INITIAL: EditSettings = { prompt: '', target: '', crossReplace: 0.8, selfReplace: 0.4, reweight: {}, localBlend: [] };

export function EditPage({ catalogue, source, onSource }: EditPageProps) {
  const [settings, setSettings] = useState<EditSettings>(INITIAL);
  const set = (patch: Partial<EditSettings>) => setSettings((s) => ({ ...s, ...patch }));
  const [photo, setPhotoState] = useState(photoSampling);
  const [photoTouched, setPhotoTouched] = useState(false);
  const setPhoto = (next: typeof photo) => {
    setPhotoTouched(true);
    setPhotoState(next);
  };
  const [uploadError, setUploadError] = useState<string>();
  const { state, start, cancel } = useJob();
  const busy = isBusy(state);
  useEscapeToCancel(busy, cancel);

  // A new source brings its own prompt; the target starts as the same words.
  useEffect(() => {
    if (source?.kind === 'result') {
      const prompt = String(source.job.params.prompt ?? '');
      setSettings({ ...INITIAL, prompt, target: prompt });
    }
  }, [source]);

  const edit = classifyEdit(settings.prompt, settings.target);
  // The server reads the syntax: the words are those of the plain text, brackets and weights aside.
  const sourceWords = plainPromptWords(settings.prompt);
  const targetWords = [...new Set(plainPromptWords(settings.target))];
  const blendWords = [...new Set([...sourceWords, ...targetWords])];
  const { errors, general: generalError } = jobErrors(state, FIELDS);
  // The model the edit runs on (a result's own, else the default, listed first) and its carry setting.
  const modelName = source?.kind === 'result' && typeof source.job.params.model === 'string' ? source.job.params.model : undefined;
  const model = catalogue.models.find((m) => m.name === modelName) ?? catalogue.models[0];
  const carry = settings.reweightCarry ?? model?.reweightCarry ?? false;
  // A picture is inverted at the model's own guidance (its nuri.json's) until the user sets one.
  useEffect(() => {
    if (!photoTouched) setPhotoState((p) => ({ ...p, guidance: photoSampling(model).guidance }));
  }, [model?.name, model?.defaultGuidance, photoTouched]);

  const submit = (e?: Event) => {
    e?.preventDefault();
    if (busy || !source || edit.kind === 'empty') return;
    void start('edit', editParams(settings, samplingOf(source, photo)));
  };
  const upload = async (file: File) => {
    setUploadError(undefined);
    try {
      const url = URL.createObjectURL(file);
      const { width, height } = await imageSize(url);
      const name = await uploadFile(file, file.name);
      onSource({ kind: 'upload', name, url, width, height });
    } catch (error) {
      setUploadError((error as Error).message);
    }
  };

  const [w, h] = sourceSize(source);
  const result = state.job?.status === 'completed' ? state.job : undefined;
  return (
    <div class="page edit">
      <form class="panel" onSubmit={submit} noValidate aria-label="Edit settings">
        <SourcePicker source={source} onSource={onSource} onUpload={upload} uploadError={uploadError ?? errors.image} />
        <Field label="Source prompt" error={errors.prompt} hint={inverted(source) ? 'describe the picture: it is inverted with this prompt' : undefined}>
          {(id, d) => <textarea id={id} name="prompt" rows={2} value={settings.prompt} aria-describedby={d} onInput={(e) => set({ prompt: e.currentTarget.value })} onKeyDown={submitOnEnter} />}
        </Field>
        {sourceWords.length > 0 && (
          <ul class="chips" aria-label="Words of the source prompt">
            {sourceWords.map((word, i) => (
              <li key={`${word}-${i}`} class={`chip ${targetWords.includes(word) ? '' : 'changed'}`}>
                {word}
              </li>
            ))}
          </ul>
        )}
        <Field label="Edited prompt" error={errors.target} hint="change, add or remove words; Enter runs the edit">
          {(id, d) => <textarea id={id} name="target" rows={2} value={settings.target} aria-describedby={d} onInput={(e) => set({ target: e.currentTarget.value })} onKeyDown={submitOnEnter} />}
        </Field>
        <p class={`edit-kind kind-${edit.kind}`} role="status" data-edit-kind={edit.kind}>
          {describeEdit(edit)}
        </p>
        <fieldset class="weights" aria-describedby={errors.reweight ? 'reweight-error' : undefined}>
          <legend>Word weights (1 = unchanged)</legend>
          {targetWords.map((word) => {
            const value = settings.reweight[word] ?? 1;
            return (
              <div class="weight" key={word}>
                <label for={`weight-${word}`}>{word}</label>
                <input id={`weight-${word}`} type="range" min={-2} max={5} step={0.1} value={value} aria-label={`weight of ${word}`} onInput={(e) => set({ reweight: { ...settings.reweight, [word]: e.currentTarget.valueAsNumber } })} />
                <output for={`weight-${word}`}>{value.toFixed(1)}</output>
              </div>
            );
          })}
          <label class="check">
            <input type="checkbox" name="reweightCarry" checked={carry} onChange={(e) => set({ reweightCarry: e.currentTarget.checked })} /> carry each weight into the words after it
            <small class="hint"> (a causal text encoder leaves a word's meaning in them too; {model?.name ?? 'the model'}'s own setting: {model?.reweightCarry ? 'on' : 'off'})</small>
          </label>
          {errors.reweight && (
            <small id="reweight-error" class="error" role="alert" data-field-error>
              {errors.reweight}
            </small>
          )}
        </fieldset>
        <div class="row">
          <Field label={`Cross-attention replace: ${settings.crossReplace}`} error={errors.crossReplace} hint="share of the steps the edit keeps the source's layout">
            {(id, d) => <input id={id} type="range" min={0} max={1} step={0.05} value={settings.crossReplace} aria-describedby={d} onInput={(e) => set({ crossReplace: e.currentTarget.valueAsNumber })} />}
          </Field>
          <Field label={`Self-attention replace: ${settings.selfReplace}`} error={errors.selfReplace} hint="share of the steps the edit keeps the source's shapes">
            {(id, d) => <input id={id} type="range" min={0} max={1} step={0.05} value={settings.selfReplace} aria-describedby={d} onInput={(e) => set({ selfReplace: e.currentTarget.valueAsNumber })} />}
          </Field>
        </div>
        <fieldset class="blend" aria-describedby={errors.localBlend ? 'blend-error' : undefined}>
          <legend>Local blend: change only where these words are</legend>
          <div class="chips">
            {blendWords.map((word) => {
              const on = settings.localBlend.includes(word);
              return (
                <button key={word} type="button" class="chip toggle" aria-pressed={on} aria-label={`local blend on ${word}`} onClick={() => set({ localBlend: on ? settings.localBlend.filter((x) => x !== word) : [...settings.localBlend, word] })}>
                  {word}
                </button>
              );
            })}
          </div>
          {errors.localBlend && (
            <small id="blend-error" class="error" role="alert" data-field-error>
              {errors.localBlend}
            </small>
          )}
        </fieldset>
        {inverted(source) && (
          <div class="row">
            <Field label="Steps" error={errors.steps}>
              {(id, d) => <NumberInput id={id} name="steps" describedBy={d} value={photo.steps} min={1} step={1} onChange={(steps) => setPhoto({ ...photo, steps })} />}
            </Field>
            <Field label="Guidance" error={errors.guidance}>
              {(id, d) => <NumberInput id={id} name="guidance" describedBy={d} value={photo.guidance} min={0} step={0.5} onChange={(guidance) => setPhoto({ ...photo, guidance })} />}
            </Field>
            <Field label="Null-text steps" error={errors.nullTextSteps} hint="0: plain DDIM inversion">
              {(id, d) => <NumberInput id={id} name="nullTextSteps" describedBy={d} value={photo.nullTextSteps} min={0} step={1} onChange={(nullTextSteps) => setPhoto({ ...photo, nullTextSteps })} />}
            </Field>
          </div>
        )}
        {generalError && (
          <p class="error" role="alert">
            {generalError}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy || !source || edit.kind === 'empty'}>
          Edit
        </button>
      </form>
      <div class="results">
        <ProgressPanel state={state} label="Edit" onCancel={cancel} />
        <div class="side-by-side">
          <figure>
            <ImageBox src={result?.images[0] ?? source?.url} alt={`source: ${settings.prompt}`} width={w} height={h} />
            <figcaption>Source</figcaption>
          </figure>
          <figure>
            <ImageBox src={result?.images[1] ?? (busy ? state.preview : undefined)} alt={result ? `edit: ${String(result.params.target ?? settings.target)}` : 'the edit appears here'} width={w} height={h} class="edit-result" />
            <figcaption>Edit</figcaption>
          </figure>
        </div>
        {result && <HeatMaps job={result} width={w} height={h} />}
      </div>
    </div>
  );
}

function sourceSize(source: EditSource | undefined): [number, number] {
  if (!source) return [1, 1];
  if (source.kind === 'upload') return [source.width, source.height];
  const { width, height } = jobSize(source.job);
  return [width, height];
}

interface SourcePickerProps {
  source?: EditSource;
  onSource: (source: EditSource) => void;
  onUpload: (file: File) => void;
  uploadError?: string;
}

/** A recent result (its settings come along) or an uploaded photo. */
function SourcePicker({ source, onSource, onUpload, uploadError }: SourcePickerProps) {
  const [recent, setRecent] = useState<Job[]>([]);
  useEffect(() => {
    listJobs(0, 12)
      .then(({ jobs }) => setRecent(jobs.filter((j) => j.type === 'generate' && j.status === 'completed' && j.images.length > 0)))
      .catch(() => setRecent([]));
  }, [source]);
  const chosen = source?.kind === 'result' ? imageName(source.url) : source?.name;
  return (
    <fieldset class="source-picker">
      <legend>Start from</legend>
      {recent.length > 0 && (
        <div class="recent" role="group" aria-label="Recent results">
          {recent.map((job) => (
            <button key={job.id} type="button" class="thumb-button" aria-pressed={chosen === imageName(job.images[0])} aria-label={`edit the result “${String(job.params.prompt)}”`} onClick={() => onSource({ kind: 'result', job, url: job.images[0] })}>
              <img src={job.images[0]} alt="" width={48} height={48} />
            </button>
          ))}
        </div>
      )}
      <Field label="or upload a photo" error={uploadError}>
        {(id, d) => <input id={id} type="file" accept="image/png,image/jpeg,image/webp" aria-describedby={d} onChange={(e) => e.currentTarget.files?.[0] && onUpload(e.currentTarget.files[0])} />}
      </Field>
    </fieldset>
  );
}

/** One heat map per token of the edited prompt, over the edit: where each word went. */
function HeatMaps({ job, width, height }: { job: Job; width: number; height: number }) {
  const tokens = Array.isArray(job.info.tokens) ? (job.info.tokens as { token: string; image: number }[]) : [];
  if (tokens.length === 0) return <p class="hint">This server sent no heat maps with the edit.</p>;
  return (
    <section class="heatmaps" aria-labelledby="heatmaps-title">
      <h2 id="heatmaps-title">Where each word went</h2>
      <ul class="maps">
        {tokens.map((t, i) => (
          <li key={`${t.token}-${i}`} class="map">
            <ImageBox src={job.images[1]} overlay={job.images[t.image]} alt={`heat map of “${t.token}” over the edit`} width={width} height={height} />
            <span class="token">{t.token}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}
