// Where a long action stands: queue position, step of total, phase, time left; and its cancel button.

import type { JobState } from '../use-job.ts';
import { isBusy } from '../use-job.ts';

const PHASES: Record<string, string> = { loading: 'loading the model', inverting: 'inverting the photo', sampling: 'sampling', training: 'training', saving: 'saving' };

export function ProgressPanel({ state, label, onCancel }: { state: JobState; label: string; onCancel: () => void }) {
  if (state.status === 'idle') return null;
  const busy = isBusy(state);
  const fraction = state.total > 0 ? state.step / state.total : 0;
  let text: string;
  if (state.status === 'submitting') text = 'sending…';
  else if (state.status === 'queued') text = state.position ? `waiting: ${state.position} job${state.position > 1 ? 's' : ''} ahead` : 'waiting in the queue';
  else if (state.status === 'running') {
    const phase = PHASES[state.phase ?? 'sampling'] ?? state.phase;
    const eta = state.etaSeconds != null ? ` · about ${formatSeconds(state.etaSeconds)} left` : '';
    text = state.total > 0 ? `${phase} · step ${state.step} of ${state.total}${eta}` : `${phase}…`;
  }
  else if (state.status === 'completed') text = 'done';
  else if (state.status === 'cancelled') text = 'cancelled';
  else text = `failed: ${state.job?.error ?? 'unknown error'}`;
  return (
    <div class={`progress status-${state.status}`} data-status={state.status}>
      <div
        class="bar"
        role="progressbar"
        aria-label={`${label} progress`}
        aria-valuemin={0}
        aria-valuemax={state.total || 1}
        aria-valuenow={state.step}
        aria-valuetext={text}
      >
        <div class="fill" style={{ width: `${Math.round(fraction * 100)}%` }} />
      </div>
      <div class="progress-row">
        <span class="progress-text" aria-live="polite">
          {text}
        </span>
        {busy && (
          <button type="button" class="secondary" onClick={onCancel} aria-keyshortcuts="Escape" disabled={state.status === 'submitting'}>
            Cancel <kbd>Esc</kbd>
          </button>
        )}
      </div>
    </div>
  );
}

export function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}
