// Milestones of a long training run: the weights at every `every` steps, kept after the run prunes
// its checkpoints, so that what more training buys can be measured afterwards (the default model's
// recipe measures its identity figure at each). Only the weights file (the EMA weights when the run
// has them: 4 bytes a parameter, not the optimiser's state) and trainer.json are kept.
import { copyFileSync, existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { checkpointName, listCheckpoints } from './checkpoint.ts';

/** The file of a checkpoint a milestone keeps: its EMA weights when present, else its weights. */
function weightsOf(checkpoint: string): string | undefined {
  return ['ema.safetensors', 'weights.safetensors'].map((name) => join(checkpoint, name)).find((path) => existsSync(path));
}

/**
 * Copies the weights of every checkpoint in `checkpoints` whose step is a multiple of `every` into
 * `into/checkpoint-<step>/` (same file name), unless already there; written to a temporary name
 * and renamed, so a milestone is whole or absent. A checkpoint pruned while being copied is skipped
 * (its copy is attempted again next time, while it exists). Returns the steps kept so far.
 */
export function keepMilestones(checkpoints: string, every: number, into: string): number[] {
  if (!(Number.isInteger(every) && every > 0)) throw new Error(`milestones: every must be a positive integer, got ${every}`);
  for (const { step, path } of existsSync(checkpoints) ? listCheckpoints(checkpoints) : []) {
    if (step % every) continue;
    const target = join(into, checkpointName(step));
    if (existsSync(target)) continue;
    const source = weightsOf(path);
    if (!source) continue;
    const temporary = `${target}.tmp-${process.pid}`;
    try {
      mkdirSync(temporary, { recursive: true });
      copyFileSync(source, join(temporary, source.slice(path.length + 1)));
      copyFileSync(join(path, 'trainer.json'), join(temporary, 'trainer.json'));
      renameSync(temporary, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  return listCheckpoints(into).map((c) => c.step);
}
