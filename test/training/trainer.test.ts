// The generic loop: resume equals the uninterrupted run, gradient accumulation averages,
// checkpoints are atomic folders, an abort finishes the step and saves.

import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdamW, Conv2d, Generator, GroupNorm, Linear, Tensor, mean, mul, reshape, silu, sub } from '../../src/engine/index.ts';
import { ShuffledBatches } from '../../src/data/batches.ts';
import { EmaWeights, compileTrainStep, latestCheckpoint, listCheckpoints, lrSchedule, train, type TrainingTask } from '../../src/training/index.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'nuri-trainer-'));
  dirs.push(d);
  return d;
}

/** A tiny conv regressor on 16 fixed random images; a fresh model per call, same init. */
async function setup(batch = 4) {
  const init = new Generator(7);
  const conv = new Conv2d('conv', 3, 8, 3, { padding: 1 });
  const norm = new GroupNorm('norm', 2, 8);
  const head = new Linear('head', 8 * 4 * 4, 2);
  for (const m of [conv, norm, head]) m.init(init);
  const params = [conv, norm, head].flatMap((m) => m.parameters());

  const x = Tensor.input('x', [batch, 3, 4, 4]);
  const y = Tensor.input('y', [batch, 2]);
  const noise = Tensor.input('noise', [batch, 3, 4, 4]);
  const h = norm.forward(silu(conv.forward(sub(x, mul(noise, 0.1)))));
  const err = sub(head.forward(reshape(h, [batch, -1])), y);
  const loss = mean(mul(err, err));
  const step = await compileTrainStep({ inputs: [x, y, noise], loss, params });

  const data = new Generator(99);
  const images = data.randn(16 * 48);
  const targets = data.randn(16 * 2);
  const order = new ShuffledBatches(16, batch);
  const task: TrainingTask = {
    step,
    nextBatch(rng) {
      const idx = order.next(rng);
      return {
        x: { data: Float32Array.from(idx.flatMap((i) => [...images.subarray(i * 48, (i + 1) * 48)])), shape: [batch, 3, 4, 4] },
        y: { data: Float32Array.from(idx.flatMap((i) => [...targets.subarray(i * 2, (i + 1) * 2)])), shape: [batch, 2] },
        noise: { data: rng.randn(batch * 48), shape: [batch, 3, 4, 4] },
      };
    },
    dataState: () => order.state(),
    loadDataState: (s) => order.loadState(s as never),
  };
  return { params, task, optimizer: new AdamW(params, { lr: 1e-2 }), ema: new EmaWeights(params, 0.9) };
}

const schedule = lrSchedule({ kind: 'cosine', lr: 1e-2, warmup: 2, totalSteps: 10 });

describe('train', () => {
  it('resumes from a checkpoint with the losses and weights of the uninterrupted run', async () => {
    const straight = await setup();
    const full = await train({ ...straight, lr: schedule, steps: 10, rng: new Generator(1), gradAccum: 2, maxGradNorm: 1 });
    expect(full.losses).toHaveLength(10);
    expect(full.losses.at(-1)!).toBeLessThan(full.losses[0]);

    const dir = tempDir();
    const first = await setup();
    const part = await train({ ...first, lr: schedule, steps: 4, rng: new Generator(1), gradAccum: 2, maxGradNorm: 1, checkpoint: { dir } });
    expect(part.losses).toEqual(full.losses.slice(0, 4));
    expect(part.checkpoint).toBe(join(dir, 'checkpoint-000004'));

    const second = await setup(); // fresh weights, optimiser and RNG: everything comes from the checkpoint
    const rest = await train({ ...second, lr: schedule, steps: 10, rng: new Generator(12345), gradAccum: 2, maxGradNorm: 1, checkpoint: { dir }, resume: true });
    expect(rest.startStep).toBe(4);
    expect(rest.losses).toEqual(full.losses.slice(4));
    second.params.forEach((p, i) => expect(p.value()).toEqual(straight.params[i].value()));
    expect(second.ema.values()).toEqual(straight.ema.values());
  });

  it('averages gradient accumulation micro-batches and writes checkpoints atomically, keeping the newest', async () => {
    const dir = tempDir();
    const run = await setup();
    const seen: number[] = [];
    const validated: number[] = [];
    await train({
      ...run,
      lr: lrSchedule({ kind: 'constant', lr: 1e-3 }),
      steps: 6,
      rng: new Generator(3),
      checkpoint: { dir, every: 2, keep: 2 },
      validate: { every: 3, run: (s) => void validated.push(s) },
      onStep: (info) => seen.push(info.step),
    });
    expect(seen).toEqual([1, 2, 3, 4, 5, 6]);
    expect(validated).toEqual([3, 6]);
    expect(listCheckpoints(dir).map((c) => c.step)).toEqual([4, 6]);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp') || n.includes('.old'))).toEqual([]);
    expect(readdirSync(latestCheckpoint(dir)!).sort()).toEqual(['ema.safetensors', 'optimizer.safetensors', 'trainer.json', 'weights.safetensors']);
  });

  it('an abort finishes the current step, saves a checkpoint and returns', async () => {
    const dir = tempDir();
    const run = await setup();
    const controller = new AbortController();
    const result = await train({
      ...run,
      lr: lrSchedule({ kind: 'constant', lr: 1e-3 }),
      steps: 100,
      rng: new Generator(3),
      checkpoint: { dir },
      signal: controller.signal,
      onStep: (info) => info.step === 3 && controller.abort(),
    });
    expect(result).toMatchObject({ step: 3, interrupted: true });
    expect(existsSync(join(dir, 'checkpoint-000003', 'trainer.json'))).toBe(true);
  });
});

describe('lrSchedule', () => {
  it('warms up linearly, then holds (constant), decays linearly or along a half cosine', () => {
    const c = lrSchedule({ kind: 'constant', lr: 1, warmup: 4 });
    expect([0, 1, 2, 3, 4, 100].map(c)).toEqual([0.25, 0.5, 0.75, 1, 1, 1]);
    const lin = lrSchedule({ kind: 'linear', lr: 1, warmup: 2, totalSteps: 12 });
    expect([lin(0), lin(2), lin(7), lin(12)]).toEqual([0.5, 1, 0.5, 0]);
    const cos = lrSchedule({ kind: 'cosine', lr: 2, totalSteps: 10, minLr: 0.2 });
    expect(cos(0)).toBe(2);
    expect(cos(5)).toBeCloseTo(1.1, 12);
    expect(cos(10)).toBeCloseTo(0.2, 12);
    expect(() => lrSchedule({ kind: 'cosine', lr: 1 })).toThrow(/totalSteps/);
  });

  it('restarts in cycles: the first cycle is the shorter run exactly, the next warms up again to a decayed peak', () => {
    const short = lrSchedule({ kind: 'cosine', lr: 1, warmup: 2, totalSteps: 8 });
    const cycled = lrSchedule({ kind: 'cosine', lr: 1, warmup: 2, totalSteps: 14, cycles: [8, 6], cycleDecay: 0.5 });
    for (let k = 0; k < 8; k++) expect(cycled(k)).toBe(short(k));
    const second = lrSchedule({ kind: 'cosine', lr: 0.5, warmup: 2, totalSteps: 6 });
    for (let k = 8; k < 14; k++) expect(cycled(k)).toBe(second(k - 8));
    expect([cycled(7), cycled(8), cycled(9)]).toEqual([short(7), 0.25, 0.5]);
    expect(() => lrSchedule({ kind: 'cosine', lr: 1, totalSteps: 10, cycles: [8, 6] })).toThrow(/8\+6 = 14 steps, but the run has 10/);
    expect(() => lrSchedule({ kind: 'constant', lr: 1, cycles: [4] })).toThrow(/decaying schedule/);
    expect(() => lrSchedule({ kind: 'linear', lr: 1, totalSteps: 4, cycles: [4], cycleDecay: 2 })).toThrow(/cycle decay/);
  });
});
