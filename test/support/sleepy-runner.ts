// A JobRunner for queue tests that needs no model: it sleeps per step (aborting between steps
// when its signal fires), reports progress with a real preview PNG, and returns a real PNG whose
// `parameters` name the job and the worker. Every start is appended to a file per job, so a test
// can count how often, and where, a job ran across processes.

import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createImage } from '../../src/io/image.ts';
import { encodePng } from '../../src/io/png.ts';
import type { JobRunner } from '../../src/server/jobs.ts';

export interface SleepyParams {
  steps: number;
  stepMs: number;
  /** Colour of the result, so results can be told apart. */
  shade?: number;
  /** An input name (upload) whose byte count goes into the job's info as initImageBytes. */
  initImage?: string;
  /** Input names whose byte counts go into the job's info as imagesBytes. */
  images?: string[];
  /** Returns one training artifact at this path (under the models folder) holding these bytes. */
  artifact?: { path: string; text: string };
  /** Makes the job fail with this message after its steps. */
  fail?: string;
}

/** The lines of a job's start file: one worker id per start. */
export function startsFile(dir: string, jobId: string): string {
  return join(dir, `${jobId}.starts`);
}

export function sleepyRunner(options: { startsDir: string; workerId: string }): JobRunner {
  return async (job, ctx) => {
    appendFileSync(startsFile(options.startsDir, job.id), `${options.workerId}\n`);
    const p = job.params as unknown as SleepyParams;
    const info: Record<string, unknown> = { ranOn: options.workerId };
    if (p.initImage) info.initImageBytes = (await ctx.readInput(p.initImage)).length;
    if (p.images) info.imagesBytes = await Promise.all(p.images.map(async (name) => (await ctx.readInput(name)).length));
    const shade = p.shade ?? 0.5;
    for (let step = 1; step <= p.steps; step++) {
      await sleep(p.stepMs, undefined, { signal: ctx.signal });
      const preview = await encodePng(createImage(4, 4, [shade, step / p.steps, 0]));
      ctx.progress({ step, total: p.steps, phase: 'sampling', preview });
    }
    if (p.fail) throw new Error(p.fail);
    const parameters = `sleepy job ${job.id}\nSteps: ${p.steps}, Worker: ${options.workerId}`;
    const png = await encodePng(createImage(8, 8, [shade, shade, shade]), { parameters });
    const artifacts = p.artifact ? [{ path: p.artifact.path, data: Buffer.from(p.artifact.text) }] : [];
    return { images: [{ png, parameters }], artifacts, info };
  };
}
