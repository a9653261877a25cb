// Checkpoints that would resume at the wrong place or from damaged weights are refused, naming
// the file: a trainer.json step that is not its folder's (1e6, −3), a flipped bit in a tensor file
// (caught by the SHA-256 recorded at write time). Resuming falls back to the newest intact
// checkpoint and says which. Temporary folders of killed writers are removed by the next save.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AdamW, Generator, Linear, Tensor, mean, mul, sub } from '../../src/engine/index.ts';
import { type CheckpointContents, checkpointName, loadCheckpoint, loadLatestIntactCheckpoint, saveCheckpoint } from '../../src/training/checkpoint.ts';
import { compileTrainStep, lrSchedule, train } from '../../src/training/index.ts';

function contents(step: number): CheckpointContents {
  return {
    state: { format: 1, step, rng: [1, 2, 3, 4], optimizer: { step } },
    weights: new Map([['w', Float32Array.of(step, 1, 2)]]),
    optimizer: new Map([['m.w', Float32Array.of(0, 0, 0)]]),
  };
}

function root(): string {
  const dir = mkdtempSync(join(tmpdir(), 'nuri-ckpt-'));
  for (const step of [2, 4]) saveCheckpoint(dir, contents(step));
  return dir;
}

function editState(dir: string, change: (state: Record<string, unknown>) => void): string {
  const path = join(dir, 'trainer.json');
  const state = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  change(state);
  writeFileSync(path, JSON.stringify(state));
  return path;
}

function flipBit(path: string): void {
  const bytes = readFileSync(path);
  bytes[bytes.length - 3] ^= 0x10;
  writeFileSync(path, bytes);
}

/** The id of a process that has exited. */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '']).pid!;
}

describe('training checkpoints', () => {
  for (const step of [1e6, -3, 2.5]) {
    it(`refuses a trainer.json step of ${step}, naming the file`, () => {
      const dir = join(root(), checkpointName(4));
      const path = editState(dir, (s) => (s.step = step));
      expect(() => loadCheckpoint(dir)).toThrow(`${path}: "step" `);
    });
  }

  it('refuses a flipped bit in the weights, naming the file', () => {
    const dir = join(root(), checkpointName(4));
    flipBit(join(dir, 'weights.safetensors'));
    expect(() => loadCheckpoint(dir)).toThrow(`${join(dir, 'weights.safetensors')} is damaged: its SHA-256 differs`);
  });

  it('falls back to the newest intact checkpoint and says which', () => {
    const dir = root();
    flipBit(join(dir, checkpointName(4), 'optimizer.safetensors'));
    const warnings: string[] = [];
    const found = loadLatestIntactCheckpoint(dir, (m) => warnings.push(m));
    expect(found?.path).toBe(join(dir, checkpointName(2)));
    expect(found?.contents.weights.get('w')).toEqual(Float32Array.of(2, 1, 2));
    expect(warnings).toEqual([expect.stringMatching(new RegExp(`optimizer\\.safetensors is damaged.*falling back to the previous checkpoint ${join(dir, checkpointName(2))}`))]);
  });

  it('refuses to resume when every checkpoint is damaged', () => {
    const dir = root();
    for (const step of [2, 4]) editState(join(dir, checkpointName(step)), (s) => (s.step = -3));
    expect(() => loadLatestIntactCheckpoint(dir, () => {})).toThrow(`no intact checkpoint in ${dir}`);
  });

  it("train() resumes from the intact checkpoint, and refuses one beyond the run's steps", async () => {
    const linear = new Linear('lin', 2, 1);
    linear.init(new Generator(1));
    const params = linear.parameters();
    const x = Tensor.input('x', [4, 2]);
    const y = Tensor.input('y', [4, 1]);
    const err = sub(linear.forward(x), y);
    const step = await compileTrainStep({ inputs: [x, y], loss: mean(mul(err, err)), params });
    const task = { step, nextBatch: (rng: Generator) => ({ x: { data: rng.randn(8), shape: [4, 2] }, y: { data: rng.randn(4), shape: [4, 1] } }) };
    const dir = mkdtempSync(join(tmpdir(), 'nuri-ckpt-train-'));
    const run = (steps: number, warnings: string[] = []) =>
      train({ task, optimizer: new AdamW(params, { lr: 1e-2 }), lr: lrSchedule({ kind: 'constant', lr: 1e-2, warmup: 0, totalSteps: steps }), steps, rng: new Generator(3), checkpoint: { dir, every: 2 }, resume: true, onWarning: (m) => warnings.push(m) });
    await run(4);
    flipBit(join(dir, checkpointName(4), 'weights.safetensors'));
    const warnings: string[] = [];
    const resumed = await run(6, warnings);
    expect(resumed.startStep).toBe(2);
    expect(warnings[0]).toMatch(/weights\.safetensors is damaged.*falling back to the previous checkpoint .*checkpoint-000002/);
    await expect(run(3)).rejects.toThrow(/checkpoint-000006 is at step 6, beyond this run's 3 steps/);
  });

  it('removes the temporary folders of killed writers at the next save, not those of live ones', () => {
    const dir = root();
    const dead = join(dir, `${checkpointName(6)}.tmp-${deadPid()}`);
    const live = join(dir, `${checkpointName(6)}.tmp-${process.ppid}`);
    for (const d of [dead, live]) mkdirSync(d);
    writeFileSync(join(dead, 'weights.safetensors'), 'partial');
    saveCheckpoint(dir, contents(8));
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
  });
});
