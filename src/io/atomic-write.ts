// Files written whole or not at all: the bytes go to a temporary file in the same folder, which is
// then renamed over the target, so a crash or a full disk never leaves half a file behind.

import { randomBytes } from 'node:crypto';
import { rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
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
