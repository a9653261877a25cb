// The package entry for `import { loadPipeline, generate } from 'nuri'`. Nuri is TypeScript run
// without a build step; tsx's scoped loader compiles src/index.ts on import, so consumers need no
// loader of their own (plain `node app.mjs` works). Types come from src/index.ts ("types" in
// package.json). test/library/package.test.ts checks this list against src/index.ts.
import { tsImport } from 'tsx/esm/api';

const nuri = await tsImport('./src/index.ts', import.meta.url);

export const {
  loadPipeline,
  StableDiffusion,
  generate,
  edit,
  checkEdit,
  crossAttentionMaps,
  attention,
  invertImage,
  personalise,
  parseLoraSpec,
  trainTextualInversion,
  trainLora,
  trainDreamBooth,
  SCHEDULER_NAMES,
  AbortError,
  isAbortError,
  executionProviders,
  readImage,
  canny,
  readControlImage,
  encodePng,
  writePng,
  parsePngText,
  readPngText,
  formatParameters,
  parseParameters,
} = nuri;
