// ControlNet units of the Generate page (the job's `controlnet` list, at most four): each a model of
// the server's controlnet/ folder, a control image, its preprocessor (Canny with its thresholds),
// resize mode, weight and the part of the sampling it acts in. Errors go beside the unit's field.

import { type ControlUnitForm, controlUnitErrors, newControlUnit } from '../controlnet-settings.ts';
import { Field, NumberInput } from './field.tsx';
import { ImageBox } from './image-box.tsx';

/** The server takes up to four units (server/schemas.ts). */
const MAX_UNITS = 4;

interface ControlNetUnitsProps {
  controlnets: string[];
  units: ControlUnitForm[];
  onChange: (units: ControlUnitForm[]) => void;
  /** Uploads a control image; resolves to its server name and a URL to show it. */
  upload: (file: File) => Promise<{ name: string; url: string } | undefined>;
  errors: Record<string, string>;
}

export function ControlNetUnits({ controlnets, units, onChange, upload, errors }: ControlNetUnitsProps) {
  const placed = controlUnitErrors(errors, units);
  const update = (i: number, patch: Partial<ControlUnitForm>) => onChange(units.map((u, j) => (j === i ? { ...u, ...patch } : u)));
  return (
    <fieldset class={`controlnet ${placed.general ? 'has-error' : ''}`} aria-describedby={placed.general ? 'controlnet-error' : undefined}>
      <legend>ControlNet</legend>
      {controlnets.length === 0 && <p class="hint">No ControlNets in the models folder's controlnet/.</p>}
      {units.map((unit, i) => {
        const e = placed.unit[i] ?? {};
        const label = `ControlNet unit ${i + 1}`;
        return (
          <fieldset class="control-unit" key={i} aria-label={label}>
            <legend>Unit {i + 1}</legend>
            <div class="row">
              <Field label="ControlNet model" error={e.model}>
                {(id, d) => (
                  <select id={id} value={unit.model} aria-describedby={d} aria-invalid={!!e.model || undefined} onChange={(ev) => update(i, { model: ev.currentTarget.value })}>
                    {!controlnets.includes(unit.model) && <option value={unit.model}>{unit.model || '(none)'}</option>}
                    {controlnets.map((name) => (
                      <option key={name} value={name}>
                        {name}
                      </option>
                    ))}
                  </select>
                )}
              </Field>
              <Field label="Preprocessor" error={e.preprocess} hint="canny: edges of an ordinary picture">
                {(id, d) => (
                  <select id={id} value={unit.preprocess} aria-describedby={d} onChange={(ev) => update(i, { preprocess: ev.currentTarget.value as ControlUnitForm['preprocess'] })}>
                    <option value="none">none (a ready control image)</option>
                    <option value="canny">canny</option>
                  </select>
                )}
              </Field>
            </div>
            <div class="init-chosen">
              {unit.image && (unit.image.url ? <ImageBox src={unit.image.url} alt={`control image of unit ${i + 1}`} width={1} height={1} class="thumb" /> : <code>{unit.image.name}</code>)}
              <Field label="Control image" error={e.image}>
                {(id, d) => (
                  <input
                    id={id}
                    type="file"
                    accept="image/png,image/jpeg,image/webp"
                    aria-describedby={d}
                    aria-invalid={!!e.image || undefined}
                    onChange={async (ev) => {
                      const file = ev.currentTarget.files?.[0];
                      const image = file && (await upload(file));
                      if (image) update(i, { image });
                    }}
                  />
                )}
              </Field>
            </div>
            {unit.preprocess === 'canny' && (
              <div class="row">
                <Field label="Canny low" error={e.cannyLow} hint="0–255 gradient">
                  {(id, d) => <NumberInput id={id} name="cannyLow" describedBy={d} value={unit.cannyLow} min={0} max={2000} step={1} onChange={(cannyLow) => update(i, { cannyLow })} invalid={!!e.cannyLow} />}
                </Field>
                <Field label="Canny high" error={e.cannyHigh}>
                  {(id, d) => <NumberInput id={id} name="cannyHigh" describedBy={d} value={unit.cannyHigh} min={0} max={2000} step={1} onChange={(cannyHigh) => update(i, { cannyHigh })} invalid={!!e.cannyHigh} />}
                </Field>
              </div>
            )}
            <div class="row">
              <Field label="Control weight" error={e.weight}>
                {(id, d) => <NumberInput id={id} name="weight" describedBy={d} value={unit.weight} min={0} max={10} step={0.05} onChange={(weight) => update(i, { weight })} invalid={!!e.weight} />}
              </Field>
              <Field label="Start" error={e.start} hint="fraction of sampling">
                {(id, d) => <NumberInput id={id} name="start" describedBy={d} value={unit.start} min={0} max={1} step={0.05} onChange={(start) => update(i, { start })} invalid={!!e.start} />}
              </Field>
              <Field label="End" error={e.end}>
                {(id, d) => <NumberInput id={id} name="end" describedBy={d} value={unit.end} min={0} max={1} step={0.05} onChange={(end) => update(i, { end })} invalid={!!e.end} />}
              </Field>
              <Field label="Resize" error={e.fit}>
                {(id, d) => (
                  <select id={id} value={unit.fit} aria-describedby={d} onChange={(ev) => update(i, { fit: ev.currentTarget.value as ControlUnitForm['fit'] })}>
                    <option value="fill">stretch</option>
                    <option value="cover">crop to fill</option>
                  </select>
                )}
              </Field>
            </div>
            <button type="button" class="secondary" onClick={() => onChange(units.filter((_, j) => j !== i))} aria-label={`Remove ${label}`}>
              Remove unit
            </button>
          </fieldset>
        );
      })}
      <button type="button" class="secondary" disabled={controlnets.length === 0 || units.length >= MAX_UNITS} onClick={() => onChange([...units, newControlUnit(controlnets[0])])}>
        Add a ControlNet unit
      </button>
      {placed.general && (
        <small id="controlnet-error" class="error" role="alert" data-field-error>
          {placed.general}
        </small>
      )}
    </fieldset>
  );
}
