// Temporary files and folders carry the writing process's id (`.x.png.<pid>.<hex>.tmp`,
// `checkpoint-000100.tmp-<pid>/`). A process killed mid-write leaves its own behind; the next run
// that writes to the same folder removes those whose process is gone.

import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/** Whether a process with this id exists (a signal-0 probe: EPERM means it exists but is not ours). */
export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the entries of `dir` whose name matches `pattern` (its first group the writer's pid) when
 * that process no longer runs and `keep` does not claim it. Returns the names removed. Never
 * throws: cleaning is best effort.
 */
export function removeStaleTemps(dir: string, pattern: RegExp, keep: (name: string) => boolean = () => false): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = Number(pattern.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid <= 0 || processAlive(pid) || keep(name)) continue;
    try {
      rmSync(join(dir, name), { recursive: true, force: true });
      removed.push(name);
    } catch {
      // Another process may be removing it too.
    }
  }
  return removed;
}
