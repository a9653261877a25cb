// Turns what a runner reports (step, total, phase, loss, preview bytes) into JobEvents with an
// ETA from the step times so far. Shared by the in-process and the Redis queue.

import type { JobEvent, JobPhase, RunnerProgress } from './jobs.ts';

export class ProgressTracker {
  private phase: JobPhase | undefined;
  private phaseStart = 0;
  private firstStep = 0;
  private lastStep = 0;
  /** The newest preview, PNG bytes. */
  latestPreview: Buffer | undefined;
  latest: { step: number; total: number; phase: JobPhase } = { step: 0, total: 0, phase: 'loading' };

  constructor(readonly id: string) {}

  /** The events one report makes: progress, and a preview when it has one. */
  report(p: RunnerProgress, now = performance.now()): JobEvent[] {
    // Timing restarts with each phase (inverting and sampling steps cost differently) and with a
    // step counter that went back (a new pass).
    if (p.phase !== this.phase || p.step < this.lastStep) {
      this.phase = p.phase;
      this.phaseStart = now;
      this.firstStep = p.step;
    }
    this.lastStep = p.step;
    this.latest = { step: p.step, total: p.total, phase: p.phase };
    const done = p.step - this.firstStep;
    const etaSeconds = done > 0 ? ((now - this.phaseStart) / done / 1000) * Math.max(0, p.total - p.step) : null;
    const events: JobEvent[] = [{ type: 'progress', id: this.id, step: p.step, total: p.total, phase: p.phase, etaSeconds, ...(p.loss !== undefined ? { loss: p.loss } : {}) }];
    if (p.preview) {
      this.latestPreview = p.preview;
      events.push({ type: 'preview', id: this.id, step: p.step, image: `data:image/png;base64,${p.preview.toString('base64')}` });
    }
    return events;
  }
}
