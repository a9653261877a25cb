// Milestones outlive the pruning of a run's checkpoints: the weights at every N steps are copied
// once, whole, and a checkpoint pruned meanwhile is skipped rather than failing the run.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkpointName } from '../../src/training/checkpoint.ts';
import { keepMilestones } from '../../src/training/checkpoint-milestones.ts';

const root = mkdtempSync(join(tmpdir(), 'nuri-milestones-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function fakeCheckpoint(dir: string, step: number, files: Record<string, string>): void {
  const path = join(dir, checkpointName(step));
  mkdirSync(path, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(path, name), text);
}

describe('keepMilestones', () => {
  it('keeps the EMA weights (else the weights) of steps that are multiples of every, once', () => {
    const checkpoints = join(root, 'run', 'checkpoints');
    const into = join(root, 'milestones');
    fakeCheckpoint(checkpoints, 50, { 'trainer.json': '{"step":50}', 'weights.safetensors': 'w50', 'ema.safetensors': 'e50', 'optimizer.safetensors': 'o' });
    fakeCheckpoint(checkpoints, 75, { 'trainer.json': '{"step":75}', 'weights.safetensors': 'w75' });
    fakeCheckpoint(checkpoints, 100, { 'trainer.json': '{"step":100}', 'weights.safetensors': 'w100' });
    expect(keepMilestones(checkpoints, 50, into)).toEqual([50, 100]);
    expect(readdirSync(join(into, checkpointName(50))).sort()).toEqual(['ema.safetensors', 'trainer.json']);
    expect(readFileSync(join(into, checkpointName(50), 'ema.safetensors'), 'utf8')).toBe('e50');
    expect(readFileSync(join(into, checkpointName(100), 'weights.safetensors'), 'utf8')).toBe('w100');

    // The run prunes step 50 and goes on: the milestone stays, and a kept one is not copied again.
    rmSync(join(checkpoints, checkpointName(50)), { recursive: true });
    writeFileSync(join(checkpoints, checkpointName(100), 'weights.safetensors'), 'changed');
    fakeCheckpoint(checkpoints, 150, { 'trainer.json': '{"step":150}', 'ema.safetensors': 'e150' });
    expect(keepMilestones(checkpoints, 50, into)).toEqual([50, 100, 150]);
    expect(readFileSync(join(into, checkpointName(100), 'weights.safetensors'), 'utf8')).toBe('w100');
    expect(readdirSync(into).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('skips a checkpoint that is incomplete or has no weights, and a run with no checkpoints yet', () => {
    const checkpoints = join(root, 'run2', 'checkpoints');
    const into = join(root, 'milestones2');
    expect(keepMilestones(checkpoints, 10, into)).toEqual([]);
    fakeCheckpoint(checkpoints, 10, { 'weights.safetensors': 'no trainer.json yet' });
    fakeCheckpoint(checkpoints, 20, { 'trainer.json': '{}' });
    expect(keepMilestones(checkpoints, 10, into)).toEqual([]);
    expect(existsSync(into)).toBe(false);
    expect(() => keepMilestones(checkpoints, 0, into)).toThrow(/positive integer/);
  });
});
