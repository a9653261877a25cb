// Seed: a new random one each time, a fixed one, or the one the last result used.

import { useId } from 'preact/hooks';
import type { SeedMode } from '../generate-settings.ts';

interface SeedFieldProps {
  mode: SeedMode;
  seed: number;
  lastSeed?: number;
  error?: string;
  onChange: (mode: SeedMode, seed: number) => void;
}

export function SeedField({ mode, seed, lastSeed, error, onChange }: SeedFieldProps) {
  const id = useId();
  const modes: [SeedMode, string][] = [
    ['random', 'random'],
    ['fixed', 'fixed'],
    ['last', lastSeed === undefined ? 'reuse the last' : `reuse the last (${lastSeed})`],
  ];
  return (
    <fieldset class={`seed ${error ? 'has-error' : ''}`} aria-describedby={error ? `${id}-error` : undefined}>
      <legend>Seed</legend>
      <div class="row">
        {modes.map(([value, label]) => (
          <label key={value} class="radio">
            <input type="radio" name={`${id}-mode`} value={value} checked={mode === value} disabled={value === 'last' && lastSeed === undefined} onChange={() => onChange(value, value === 'last' && lastSeed !== undefined ? lastSeed : seed)} />
            {label}
          </label>
        ))}
        <input
          type="number"
          name="seed"
          aria-label="Seed value"
          min={0}
          step={1}
          value={Number.isNaN(seed) ? '' : seed}
          disabled={mode !== 'fixed'}
          aria-invalid={!!error || undefined}
          onInput={(e) => onChange('fixed', e.currentTarget.valueAsNumber)}
        />
      </div>
      {error && (
        <small id={`${id}-error`} class="error" role="alert" data-field-error>
          {error}
        </small>
      )}
    </fieldset>
  );
}
