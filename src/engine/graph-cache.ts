// The graph cache's bound. Every graph with external weights gets a folder under
// `<cache>/graphs/<hash>`: the graph, hard links to the checkpoint files it reads, and what Nuri
// derives from them (int8 weights, ONNX Runtime's optimised graph with its re-laid-out weights —
// for the SD-1.5 UNet a 3.4 GB copy). A new hash comes with every new checkpoint, rewritten
// checkpoint, shape and ONNX Runtime version, and nothing removed the old ones: a development
// machine's cache had grown to 2,109 folders and 8.3 GB of its own. So the cache keeps the folders used last
// within a size (NURI_CACHE_MAX_GB, default 20) and removes the least recently used beyond it.
//
// What a folder costs is its files that only the cache holds (one link): a hard link to a
// checkpoint that still exists costs nothing, but one whose checkpoint was deleted keeps its bytes
// alive, and counts. A folder's modification time says when it was last used (`markUsed`, at every
// session made from it). Folders used within the last hour are never removed, so that another
// process building or reading one is left alone.

import { lstatSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { join } from 'node:path';

export const DEFAULT_CACHE_MAX_GB = 20;
/** Folders used more recently than this stay, whatever the size. */
export const MIN_IDLE_MS = 60 * 60 * 1000;
/** A process prunes at most this often (the scan stats every file of the cache). */
const PRUNE_INTERVAL_MS = 10 * 60 * 1000;
/** A graph folder's name: the 24 hex digits of its hash (nothing else under graphs/ is touched). */
const GRAPH_FOLDER = /^[0-9a-f]{24}$/;

/** The bound in bytes from NURI_CACHE_MAX_GB (a positive number of GB), or the default. */
export function cacheMaxBytes(env: string | undefined = process.env.NURI_CACHE_MAX_GB): number {
  if (env === undefined || env === '') return DEFAULT_CACHE_MAX_GB * 2 ** 30;
  const gb = Number(env);
  if (!(gb > 0)) throw new Error(`NURI_CACHE_MAX_GB: expected a positive number of gigabytes, got ${JSON.stringify(env)}`);
  return gb * 2 ** 30;
}

/** Records that a graph folder was used now (its modification time). Best effort. */
export function markUsed(dir: string): void {
  try {
    const now = new Date();
    utimesSync(dir, now, now);
  } catch {}
}

export interface GraphFolder {
  name: string;
  /** Bytes of the files only the cache holds. */
  bytes: number;
  lastUsedMs: number;
}

/** Every graph folder under `graphsDir` with what it costs and when it was used. */
export function graphFolders(graphsDir: string): GraphFolder[] {
  let names: string[];
  try {
    names = readdirSync(graphsDir);
  } catch {
    return [];
  }
  const folders: GraphFolder[] = [];
  for (const name of names) {
    if (!GRAPH_FOLDER.test(name)) continue;
    const dir = join(graphsDir, name);
    try {
      const info = lstatSync(dir);
      if (!info.isDirectory()) continue;
      let bytes = 0;
      for (const file of readdirSync(dir)) {
        const s = lstatSync(join(dir, file), { throwIfNoEntry: false });
        if (s?.isFile() && s.nlink === 1) bytes += s.size;
      }
      folders.push({ name, bytes, lastUsedMs: info.mtimeMs });
    } catch {
      // Removed by another process meanwhile.
    }
  }
  return folders;
}

export interface PruneOptions {
  maxBytes: number;
  /** Folders this process holds sessions from: never removed. */
  inUse?: ReadonlySet<string>;
  now?: number;
}

/**
 * Removes the least recently used graph folders until the cache's own bytes are within `maxBytes`,
 * leaving those in use and those used within MIN_IDLE_MS. Returns the names removed. Never throws.
 */
export function pruneGraphCache(graphsDir: string, options: PruneOptions): string[] {
  const now = options.now ?? Date.now();
  const folders = graphFolders(graphsDir).sort((a, b) => a.lastUsedMs - b.lastUsedMs);
  let total = folders.reduce((sum, f) => sum + f.bytes, 0);
  const removed: string[] = [];
  for (const folder of folders) {
    if (total <= options.maxBytes) break;
    if (options.inUse?.has(folder.name) || now - folder.lastUsedMs < MIN_IDLE_MS) continue;
    try {
      rmSync(join(graphsDir, folder.name), { recursive: true, force: true });
      total -= folder.bytes;
      removed.push(folder.name);
    } catch {
      // Another process may be removing it too.
    }
  }
  return removed;
}

let lastPrune = -Infinity;

/** `pruneGraphCache` unless this process pruned within PRUNE_INTERVAL_MS. */
export function prunePeriodically(graphsDir: string, options: Omit<PruneOptions, 'now'>): void {
  const now = Date.now();
  if (now - lastPrune < PRUNE_INTERVAL_MS) return;
  lastPrune = now;
  pruneGraphCache(graphsDir, { ...options, now });
}
