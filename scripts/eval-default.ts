// How well a model follows colour words (the default model's acceptance check, also used to watch
// the UNet stage while it trains):
//
//   npx tsx scripts/eval-default.ts [--model models/default] [--checkpoint DIR [--ema]] [--out grid.png]
//
// With --checkpoint, the UNet's weights come from a `nuri train unet` checkpoint folder (its EMA
// weights with --ema) on top of --model, the pipeline it trains in. Prints the dominant hue of
// each colour prompt's image and the count of matches; --out writes the images side by side.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { dominantHue, hueName } from '../src/data/colour.ts';
import { readSafetensors } from '../src/engine/index.ts';
import type { RgbImage } from '../src/io/image.ts';
import { writePng } from '../src/io/png.ts';
import { generate } from '../src/pipelines/generate.ts';
import { StableDiffusion } from '../src/pipelines/stable-diffusion.ts';

const PROMPTS: [string, string][] = [
  ['large red circle', 'red'],
  ['orange heart', 'orange'],
  ['yellow heart', 'yellow'],
  ['green apple', 'green'],
  ['green heart', 'green'],
  ['blue heart', 'blue'],
  ['large blue circle', 'blue'],
  ['purple heart', 'purple'],
  ['red apple', 'red'],
  ['red car', 'red'],
];

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: join(import.meta.dirname, '..', 'models', 'default') },
    checkpoint: { type: 'string' },
    ema: { type: 'boolean', default: false },
    steps: { type: 'string', default: '15' },
    guidance: { type: 'string', default: '7.5' },
    seed: { type: 'string', default: '3' },
    out: { type: 'string' },
  },
});

const sd = StableDiffusion.load(values.model!);
if (values.checkpoint) {
  const weights = readSafetensors(join(values.checkpoint, values.ema ? 'ema.safetensors' : 'weights.safetensors'));
  for (const p of sd.components.unet.parameters()) {
    const t = weights.get(p.name);
    if (!t) throw new Error(`checkpoint has no ${p.name}`);
    p.setValue(t.data as Float32Array);
  }
}
const began = performance.now();
const { images } = await generate(sd, { prompts: PROMPTS.map(([p]) => p), steps: Number(values.steps), guidance: Number(values.guidance), seed: Number(values.seed), scheduler: 'ddim' });
let matches = 0;
for (const [i, [prompt, want]] of PROMPTS.entries()) {
  const hue = dominantHue(images[i]);
  const seen = hue ? hueName(hue.hue) : 'none';
  if (seen === want) matches++;
  console.log(`${seen === want ? '✓' : '✗'} ${prompt.padEnd(18)} ${seen}${seen === want ? '' : ` (want ${want})`}`);
}
console.log(`${matches}/${PROMPTS.length} colours followed (${((performance.now() - began) / 1000).toFixed(1)} s)`);

if (values.out) {
  const size = images[0].width;
  const grid: RgbImage = { width: size * images.length, height: size, channels: 3, data: new Float32Array(3 * size * size * images.length) };
  const plane = grid.width * size;
  images.forEach((image, n) => {
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) grid.data[c * plane + y * grid.width + n * size + x] = image.data[c * size * size + y * size + x];
      }
    }
  });
  await writePng(values.out, grid);
  console.log(`wrote ${values.out}`);
}
