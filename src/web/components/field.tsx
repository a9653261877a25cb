// A labelled control with a hint and the server's error for it, tied together for screen readers.

import type { ComponentChildren } from 'preact';
import { useId } from 'preact/hooks';

interface FieldProps {
  label: string;
  /** The server's message when it blamed this field. */
  error?: string;
  hint?: string;
  class?: string;
  children: (id: string, describedBy: string | undefined) => ComponentChildren;
}

export function Field({ label, error, hint, class: className, children }: FieldProps) {
  const id = useId();
  const describedBy = [hint && `${id}-hint`, error && `${id}-error`].filter(Boolean).join(' ') || undefined;
  return (
    <div class={`field ${error ? 'has-error' : ''} ${className ?? ''}`}>
      <label for={id}>{label}</label>
      {children(id, describedBy)}
      {hint && (
        <small id={`${id}-hint`} class="hint">
          {hint}
        </small>
      )}
      {error && (
        <small id={`${id}-error`} class="error" role="alert" data-field-error>
          {error}
        </small>
      )}
    </div>
  );
}

/** A number input that keeps its value as a number (NaN while the box is empty). */
export function NumberInput(props: { id: string; describedBy?: string; value: number; onChange: (v: number) => void; min?: number; max?: number; step?: number; name: string; invalid?: boolean }) {
  return (
    <input
      id={props.id}
      name={props.name}
      type="number"
      inputMode="decimal"
      value={Number.isNaN(props.value) ? '' : props.value}
      min={props.min}
      max={props.max}
      step={props.step ?? 'any'}
      aria-describedby={props.describedBy}
      aria-invalid={props.invalid || undefined}
      onInput={(e) => props.onChange((e.currentTarget as HTMLInputElement).valueAsNumber)}
    />
  );
}

/** A model from the server's catalogue, as a labelled select. */
export function ModelField(props: { label: string; models: { name: string }[]; value: string; error?: string; onChange: (name: string) => void }) {
  return (
    <Field label={props.label} error={props.error}>
      {(id, d) => (
        <select id={id} name="model" value={props.value || props.models[0]?.name} aria-describedby={d} onChange={(e) => props.onChange(e.currentTarget.value)}>
          {props.models.map((m) => (
            <option key={m.name} value={m.name}>
              {m.name}
            </option>
          ))}
        </select>
      )}
    </Field>
  );
}
