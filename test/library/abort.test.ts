// Every long library call stops on its AbortSignal between two steps with an Error named
// 'AbortError', after reporting the steps it finished through onProgress (and the older onStep).

import { describe, expect, it } from 'vitest';
import { AbortError, attention, edit, generate, invertImage, loadPipeline } from '../../src/index.ts';
import { createImage } from '../../src/io/image.ts';

const sd = await loadPipeline(); // the bundled 32-px model: a step takes milliseconds

/** A signal that aborts once `after` progress callbacks have run, and the steps they saw. */
function abortAfter(after: number) {
  const controller = new AbortController();
  const steps: number[] = [];
  const onProgress = (p: { step: number }) => {
    steps.push(p.step);
    if (steps.length === after) controller.abort();
  };
  return { signal: controller.signal, steps, onProgress };
}

describe('AbortSignal and onProgress', () => {
  it('generate: stops after the step that saw the abort; onStep and onProgress both hear every step', async () => {
    const a = abortAfter(2);
    const heardByOnStep: number[] = [];
    const run = generate(sd, { prompts: ['red apple'], steps: 5, seed: 1, signal: a.signal, onProgress: a.onProgress, onStep: (p) => heardByOnStep.push(p.step) });
    await expect(run).rejects.toBeInstanceOf(AbortError);
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(a.steps).toEqual([1, 2]);
    expect(heardByOnStep).toEqual([1, 2]);
  });

  it('an already aborted signal runs no step', async () => {
    const a = abortAfter(1);
    const controller = new AbortController();
    controller.abort();
    await expect(generate(sd, { prompts: ['red apple'], steps: 3, signal: controller.signal, onProgress: a.onProgress })).rejects.toMatchObject({ name: 'AbortError' });
    expect(a.steps).toEqual([]);
  });

  it('attention (crossAttentionMaps) and edit stop between UNet steps', async () => {
    const maps = abortAfter(1);
    await expect(attention(sd, { prompt: 'red apple', steps: 4, signal: maps.signal, onProgress: maps.onProgress })).rejects.toMatchObject({ name: 'AbortError' });
    expect(maps.steps).toEqual([1]);
    const edited = abortAfter(3);
    await expect(edit(sd, { source: 'cat face', target: 'dog face', steps: 4, signal: edited.signal, onProgress: edited.onProgress })).rejects.toMatchObject({ name: 'AbortError' });
    expect(edited.steps).toEqual([1, 2, 3]);
  });

  it('invertImage stops inside null-text inversion, reporting each step with its timestep', async () => {
    const seen: { phase: string; step: number; timestep: number }[] = [];
    const controller = new AbortController();
    const run = invertImage(sd, {
      prompt: 'red apple',
      image: createImage(32, 32, [0.9, 0.1, 0.1]),
      steps: 3,
      guidance: 7.5,
      signal: controller.signal,
      onProgress: (p) => {
        seen.push({ phase: p.phase, step: p.step, timestep: p.timestep });
        if (p.phase === 'null-text') controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen.map((p) => `${p.phase}:${p.step}`)).toEqual(['ddim:1', 'ddim:2', 'ddim:3', 'null-text:1']);
    expect(seen[0].timestep).toBeLessThan(seen[2].timestep); // inversion climbs the timesteps
  });
});
