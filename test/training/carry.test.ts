// The default model's training carried between machines: packing keeps finished stages in fp16
// without their checkpoints, and the UNet's newest checkpoint without its optimiser moments;
// unpacking into an empty work folder restores the stage markers in their finishing order and a
// checkpoint that resumes at the same step, RNG and data position with AdamW started afresh.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SafetensorsFile, writeSafetensors } from '../../src/engine/index.ts';
import { packProgress, unpackProgress } from '../../src/training/carry.ts';
import { latestCheckpoint, loadCheckpoint, saveCheckpoint } from '../../src/training/checkpoint.ts';

const weight = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) * 0.1);

function workFolder(): string {
  const work = mkdtempSync(join(tmpdir(), 'nuri-carry-'));
  mkdirSync(join(work, 'stages'));
  const marker = (name: string, seconds: number) => {
    const path = join(work, 'stages', `${name}.json`);
    writeFileSync(path, JSON.stringify({ finishedAt: name, seconds }));
    utimesSync(path, 1_000 + seconds, 1_000 + seconds);
  };
  for (const stage of ['vae', 'clip']) {
    mkdirSync(join(work, stage, 'checkpoints', 'checkpoint-000010'), { recursive: true });
    writeSafetensors(join(work, stage, 'model.safetensors'), new Map([['w', { dtype: 'F32', shape: [8, 8], data: weight }]]));
    writeFileSync(join(work, stage, 'config.json'), '{"x": 1}');
  }
  writeFileSync(join(work, 'latents.json'), '{"scalingFactor": 0.5}');
  // Finishing order vae, clip, latents: not the recipe's order, so the test sees it kept.
  marker('vae', 10);
  marker('clip', 20);
  marker('latents', 30);
  writeFileSync(join(work, 'costs.json'), JSON.stringify({ vae: 10, clip: 20, unet: 5 }));
  // A measured milestone, and a half-written one that must not travel.
  mkdirSync(join(work, 'identity'));
  writeFileSync(join(work, 'identity', 'step-50.json'), '{"identity": {"train": {"rate": 0.25}}}');
  writeFileSync(join(work, 'identity', 'step-75.json.tmp'), '{');
  saveCheckpoint(join(work, 'unet', 'checkpoints'), {
    state: { format: 1, step: 75, rng: [5, 6, 7, 8], data: { epoch: 2, index: 3 }, optimizer: { step: 75 }, emaUpdates: 75 },
    weights: new Map([['unet.w', weight]]),
    optimizer: new Map([['m.unet.w', weight.map((x) => x / 10)], ['v.unet.w', weight.map((x) => x * x)]]),
    ema: new Map([['unet.w', weight.map((x) => x / 2)]]),
  });
  return work;
}

describe('carrying the default model training between machines', () => {
  it('packs finished stages in fp16 and the UNet checkpoint without its moments', () => {
    const work = workFolder();
    const progress = join(work, 'progress');
    const manifest = packProgress(work, progress);
    expect(manifest.stages.map((s) => s.name)).toEqual(['vae', 'clip', 'latents']);
    expect(manifest.unetStep).toBe(75);
    expect(manifest.costs).toEqual({ vae: 10, clip: 20, unet: 5 });
    expect(existsSync(join(progress, 'vae', 'checkpoints'))).toBe(false);
    const file = SafetensorsFile.open(join(progress, 'clip', 'model.safetensors'));
    expect(file.read('w').dtype).toBe('F16');
    file.close();
    expect(existsSync(join(progress, 'unet-checkpoint', 'optimizer.safetensors'))).toBe(false);
    expect(existsSync(join(progress, 'unet-checkpoint', 'ema.safetensors'))).toBe(true);
  });

  it('unpacks into an empty work folder a checkpoint that resumes where the run stopped', () => {
    const source = workFolder();
    const progress = join(source, 'progress');
    packProgress(source, progress);
    const work = join(mkdtempSync(join(tmpdir(), 'nuri-carry-to-')), 'work');
    const manifest = unpackProgress(progress, work);
    expect(manifest?.unetStep).toBe(75);
    const finished = (name: string) => statSync(join(work, 'stages', `${name}.json`)).mtimeMs;
    expect(finished('vae')).toBeLessThan(finished('clip'));
    expect(finished('clip')).toBeLessThan(finished('latents'));
    expect(JSON.parse(readFileSync(join(work, 'stages', 'clip.json'), 'utf8'))).toEqual({ finishedAt: 'clip', seconds: 20 });
    expect(readFileSync(join(work, 'latents.json'), 'utf8')).toBe('{"scalingFactor": 0.5}');
    const vae = SafetensorsFile.open(join(work, 'vae', 'model.safetensors'));
    const carried = vae.readFloat32('w');
    vae.close();
    carried.forEach((x, i) => expect(Math.abs(x - weight[i])).toBeLessThan(1e-4));

    const checkpoint = loadCheckpoint(latestCheckpoint(join(work, 'unet', 'checkpoints'))!);
    expect(checkpoint.state.step).toBe(75);
    expect(checkpoint.state.rng).toEqual([5, 6, 7, 8]);
    expect(checkpoint.state.data).toEqual({ epoch: 2, index: 3 });
    expect(checkpoint.state.emaUpdates).toBe(75);
    expect(checkpoint.state.optimizer.step).toBe(0);
    expect([...checkpoint.optimizer.get('m.unet.w')!].every((x) => x === 0)).toBe(true);
    expect([...checkpoint.optimizer.get('v.unet.w')!].every((x) => x === 0)).toBe(true);
    checkpoint.weights.get('unet.w')!.forEach((x, i) => expect(Math.abs(x - weight[i])).toBeLessThan(1e-4));
    checkpoint.ema!.get('unet.w')!.forEach((x, i) => expect(Math.abs(x - weight[i] / 2)).toBeLessThan(1e-4));
  });

  it('carries the identity figures measured on milestones, not half-written ones', () => {
    const source = workFolder();
    const progress = join(source, 'progress');
    packProgress(source, progress);
    const work = mkdtempSync(join(tmpdir(), 'nuri-carry-to-'));
    unpackProgress(progress, work);
    expect(readFileSync(join(work, 'identity', 'step-50.json'), 'utf8')).toBe('{"identity": {"train": {"rate": 0.25}}}');
    expect(existsSync(join(work, 'identity', 'step-75.json.tmp'))).toBe(false);
  });

  it("takes only the finished stages from another recipe's progress (stagesOnly), not its UNet or figures", () => {
    const source = workFolder();
    packProgress(source, join(source, 'progress'));
    const work = join(mkdtempSync(join(tmpdir(), 'nuri-carry-to-')), 'work');
    const manifest = unpackProgress(join(source, 'progress'), work, { stagesOnly: true });
    expect(manifest?.stages.map((s) => s.name)).toEqual(['vae', 'clip', 'latents']);
    expect(manifest?.unetStep).toBeUndefined();
    expect(JSON.parse(readFileSync(join(work, 'costs.json'), 'utf8'))).toEqual({ vae: 10, clip: 20 });
    expect(existsSync(join(work, 'clip', 'model.safetensors'))).toBe(true);
    expect(readFileSync(join(work, 'latents.json'), 'utf8')).toBe('{"scalingFactor": 0.5}');
    expect(existsSync(join(work, 'unet'))).toBe(false);
    expect(existsSync(join(work, 'identity'))).toBe(false);
  });

  it('leaves a work folder that already has stages alone', () => {
    const work = workFolder();
    packProgress(work, join(work, 'progress'));
    expect(unpackProgress(join(work, 'progress'), work)).toBeUndefined();
    expect(unpackProgress(join(work, 'nowhere'), join(work, 'other'))).toBeUndefined();
  });
});
