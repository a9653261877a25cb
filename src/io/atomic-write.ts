// Files written whole or not at all: the bytes go to a temporary file in the same folder, which is
// then renamed over the target, so a crash or a full disk never leaves half a file behind. A
// process killed between the two leaves its temporary file: the next write to that folder removes
// the temporary files of writers that are gone.

import { randomBytes } from 'node:crypto';
import { rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { removeStaleTemps } from '../engine/stale-temp.ts';

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  cleanFolderOnce(dirname(path));
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(temporary, data);
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => {});
    const { code, message } = error as NodeJS.ErrnoException;
    const reason = code === 'ENOENT' ? `folder ${dirname(path)} does not exist` : message;
    throw new Error(`cannot write ${path}: ${reason}`);
  }
}

/** `.NAME.<pid>.<hex>.tmp`, as writeFileAtomic names its temporary files. */
const TEMP_NAME = /^\..+\.(\d+)\.[0-9a-f]+\.tmp$/;
const cleaned = new Set<string>();

/** Removes the temporary files that killed writers left in a folder, once per folder and process. */
function cleanFolderOnce(dir: string): void {
  if (cleaned.has(dir)) return;
  cleaned.add(dir);
  removeStaleTemps(dir, TEMP_NAME);
}
