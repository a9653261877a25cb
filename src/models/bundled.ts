// The small model that ships in the repository (models/default): used when no model is named, and
// its tokenizer is the CLIP vocabulary that single-file checkpoints lack.

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const bundledModel = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'models', 'default');

/** The bundled model's tokenizer folder. */
export const bundledTokenizer = join(bundledModel, 'tokenizer');

/** The bundled model's folder; throws when it is missing from the install. */
export function defaultModelPath(): string {
  if (!existsSync(join(bundledModel, 'model_index.json'))) {
    throw new Error(`no model given and the bundled default model is missing (${bundledModel}); pass a model path`);
  }
  return bundledModel;
}
