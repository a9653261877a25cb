// Worker thread of quantize-file.ts: quantises its share of a q8 graph's weights and writes them into
// the one file. Plain JavaScript that registers tsx's loader first, so that it starts whatever loader
// (or none) the parent process runs under, and runs the same TypeScript as the parent's own share.

import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { writeItems } = await import('./quantize-file.ts');
writeItems(workerData.path, workerData.items);
