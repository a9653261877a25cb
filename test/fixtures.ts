// Where the shared reference fixtures live: ../shared/fixtures beside the repository, or $NURI_FIXTURES.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export const FIXTURES = process.env.NURI_FIXTURES ?? join(repoRoot, '..', 'shared', 'fixtures');
export const TINY_SD = join(FIXTURES, 'tiny-sd');
export const REFERENCE = join(FIXTURES, 'reference');
/** The second set (SDXL, inpainting, few-step schedulers, TAESD, long prompts, ControlNet). */
export const REFERENCE_2 = join(FIXTURES, 'reference-2');
export const TINY_SDXL = join(FIXTURES, 'tiny-sdxl');

if (!existsSync(FIXTURES)) {
  throw new Error(`reference fixtures not found at ${FIXTURES} (set NURI_FIXTURES)`);
}

export interface ReferenceCase {
  name: string;
  file: string;
  section: string;
  [key: string]: unknown;
}

let cases: ReferenceCase[] | undefined;

/** One case of reference/index.json or reference-2/index.json by name; its `file` is resolved to an absolute path. */
export function referenceCase(name: string): ReferenceCase {
  cases ??= [REFERENCE, REFERENCE_2].flatMap((dir) => (JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { cases: ReferenceCase[] }).cases);
  const found = cases.find((c) => c.name === name);
  if (!found) throw new Error(`no reference case named ${name}`);
  return { ...found, file: join(FIXTURES, found.file) };
}
