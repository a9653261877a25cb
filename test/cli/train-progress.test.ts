// The log lines `nuri train` writes when stderr is not a terminal (a recipe's log file): every ~2% of
// the steps, and at least once a minute, so that a resumed long run still says how it goes.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { type TrainFlags, withTrainingProgress } from '../../src/cli/train-run.ts';

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe('nuri train progress lines', () => {
  it('logs every 2% of the steps, and after a minute without a line, with the metrics', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const lines: string[] = [];
    vi.spyOn(console, 'error').mockImplementation((line: string) => void lines.push(line));
    const flags = { steps: 10_000, images: 'x', seed: 0, validateEvery: 0, out: 'x' } as TrainFlags;
    await withTrainingProgress('train unet', flags, async ({ onProgress }) => {
      // A run resumed at step 9,990: the 2% marks fall every 200 steps, and the next is the last.
      for (const step of [9991, 9992, 9993, 10_000]) {
        if (step === 9993) vi.advanceTimersByTime(61_000);
        onProgress!({ phase: 'training', step, total: 10_000, loss: 0.5, lr: 1e-4, metrics: { grounding: 0.25 }, secondsPerStep: 1, etaSeconds: 10 });
      }
    });
    expect(lines.map((l) => l.split(' ')[1])).toEqual(['9993/10000', '10000/10000']);
    expect(lines[0]).toMatch(/^step 9993\/10000 loss 0\.5000 grounding 0\.2500 lr 1\.00e-4/);
  });
});
