// One long-running job as page state: submit, follow its events (queue position, steps with ETA,
// previews, training loss), cancel. Every page runs its work through this.

import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, type Job, type JobPhase, type JobStatus, type JobType, cancelJob, submitJob, watchJob } from './api.ts';

export interface JobState {
  id?: string;
  status: JobStatus | 'idle' | 'submitting';
  step: number;
  total: number;
  phase?: JobPhase;
  etaSeconds: number | null;
  /** Jobs ahead of this one while it waits. */
  position?: number;
  /** The newest step's preview (a data: URL). */
  preview?: string;
  previewStep?: number;
  /** Training loss per step, in arrival order. */
  losses: { step: number; loss: number }[];
  /** The finished record. */
  job?: Job;
  /** The server refused the request (the field it names is shown beside that field). */
  refused?: ApiError;
}

const IDLE: JobState = { status: 'idle', step: 0, total: 0, etaSeconds: null, losses: [] };

export function isBusy(state: JobState): boolean {
  return state.status === 'submitting' || state.status === 'queued' || state.status === 'running';
}

export function useJob(onFinished?: (job: Job) => void) {
  const [state, setState] = useState<JobState>(IDLE);
  const stop = useRef<() => void>(() => {});
  const finished = useRef(onFinished);
  finished.current = onFinished;
  useEffect(() => () => stop.current(), []);

  const start = useCallback(async (type: JobType, params: Record<string, unknown>) => {
    stop.current();
    setState({ ...IDLE, status: 'submitting' });
    let id: string;
    try {
      ({ id } = await submitJob(type, params));
    } catch (error) {
      setState({ ...IDLE, refused: error instanceof ApiError ? error : new ApiError(String(error), 0) });
      return;
    }
    setState((s) => ({ ...s, id, status: 'queued' }));
    stop.current = watchJob(id, {
      onEvent: (event) =>
        setState((s) => {
          switch (event.type) {
            case 'queued':
              return { ...s, status: 'queued', position: event.position };
            case 'started':
              return { ...s, status: 'running', position: undefined };
            case 'progress': {
              const losses = event.loss === undefined ? s.losses : [...s.losses, { step: event.step, loss: event.loss }];
              return { ...s, status: 'running', position: undefined, step: event.step, total: event.total, phase: event.phase, etaSeconds: event.etaSeconds, losses };
            }
            case 'preview':
              return { ...s, preview: event.image, previewStep: event.step };
            default:
              return s;
          }
        }),
      onFinished: (job) => {
        setState((s) => ({ ...s, status: job.status, job, step: job.status === 'completed' ? s.total || job.progress.total : s.step, etaSeconds: null }));
        finished.current?.(job);
      },
    });
  }, []);

  const cancel = useCallback(async () => {
    const id = state.id;
    if (id && (state.status === 'queued' || state.status === 'running')) await cancelJob(id).catch(() => undefined);
  }, [state.id, state.status]);

  return { state, start, cancel };
}

/** Escape cancels the running job, wherever the focus is. */
export function useEscapeToCancel(active: boolean, cancel: () => void): void {
  useEffect(() => {
    if (!active) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        cancel();
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [active, cancel]);
}
