// The resident memory of a process and every process under it, sampled while it runs: a run that
// hands work to a child process (building a graph cache, say) is charged for both at once. Each
// process's own peak (maxRSS) is only known to itself, so a run's honest peak is the larger of the
// sampled total and any one process's maxRSS.

import { readFileSync, readdirSync } from 'node:fs';

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback; // the process has just exited
  }
}

/** The process and its descendants, from /proc/<pid>/task/<tid>/children (Linux). */
function tree(pid: number): number[] {
  const found = [pid];
  for (let i = 0; i < found.length; i++) {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${found[i]}/task`);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      for (const child of readOr(`/proc/${found[i]}/task/${tid}/children`, '').split(/\s+/).filter(Boolean)) found.push(Number(child));
    }
  }
  return found;
}

/** Bytes resident in the process and its descendants now (VmRSS summed). */
export function treeRss(pid: number): number {
  let total = 0;
  for (const p of tree(pid)) {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readOr(`/proc/${p}/status`, ''));
    if (kb) total += Number(kb[1]) * 1024;
  }
  return total;
}

export interface TreeSampler {
  /** Stops sampling; returns the largest total seen and how many processes the tree ever held. */
  stop(): { peakBytes: number; processes: number };
}

/** Samples the tree's total RSS every `everyMs` until stopped. */
export function sampleTree(pid: number, everyMs = 50): TreeSampler {
  let peakBytes = 0;
  const seen = new Set<number>();
  const sample = () => {
    for (const p of tree(pid)) seen.add(p);
    peakBytes = Math.max(peakBytes, treeRss(pid));
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return { peakBytes, processes: seen.size };
    },
  };
}
