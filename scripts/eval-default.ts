// Evaluates the default model (issue 6), `npm run eval:default`:
//
//   npx tsx scripts/eval-default.ts [--model models/default] [--checkpoint DIR [--ema]] [--colours]
//                                   [--identity] [--names 300] [--count 200] [--eval-steps 20]
//                                   [--json FILE] [--out grid.png] [--dtype fp32|q8] [--empty-end-of-text]
//                                   [--guidance G] [--scheduler ddim] [--identity-steps N] [--style-word S]
//
// 1. Colour words: the dominant hue of each colour prompt's image and the count of matches (the
//    acceptance check; alone with --colours, which is quick enough to watch the UNet stage train).
// 2. For up to --count held-out and --count training images of the emoji set (skin tones off, as
//    the recipe trains), with the model's own CLIP (text_encoder/ + image_encoder/):
//    image→caption retrieval top-1 / top-5 among the set's captions, and the Fréchet distance in
//    CLIP's image-embedding space (unit-length embeddings) between generated and real images, for
//    real images, images the model generates from the captions, and images the same pipeline
//    generates with a freshly initialised UNet (seed 0, the weights the recipe's UNet stage starts
//    from). Images are generated with DDIM and fixed seeds (image i of a set from seed i), so two
//    runs give the same numbers.
//
// 3. Identity (issue 11): one image per emoji name (up to --names training names, evenly spaced,
//    and as many held-out ones), generated as `nuri generate` does by default (DDIM, the model's
//    steps and guidance: 30 at 7.5, or its nuri.json's; name i from seed i), and the share whose
//    own emoji (either style) is among its 5 nearest real images by pixels, over every base image
//    of both styles on white at the same size (src/training/emoji-identity.ts), and how far off the
//    misses are (the rank of the own emoji's nearest image, in bands). Alone with --identity (quick on a checkpoint with a
//    small --names, e.g. `--model WORK/base --checkpoint WORK/unet/checkpoints/checkpoint-N --ema
//    --identity --names 40`).
//
// 4. Prompt-to-Prompt (issue 11), alone with --edits: a word swap's layout kept, local blend at the
//    default size, a colour word re-weighted ×0/×0.5/×1/×2/×3 (carried into the words after it when
//    the model's nuri.json says reweightCarry, as `nuri edit` then does), and how much of a noun's heat
//    map lands on the object (src/training/edit-checks.ts), over --edit-seeds.
//
// --empty-end-of-text generates with each prompt's end-of-text states (EOS and the padding) replaced
// by the empty prompt's, as `nuri train unet --padding-dropout` trains: the identity figure then
// says how much of the caption the UNet reads from its words alone. --isolated-words generates with
// each word's states encoded as if the words before it were absent and the end-of-text states
// emptied, as `nuri train unet --word-isolation` trains (the empty prompt stays as it is).
//
// --guidance and --scheduler (default DDIM, the default model's own) change how sections 1–3 sample,
// to compare settings; Prompt-to-Prompt keeps DDIM at the model's own guidance. --identity-steps
// sets the identity section's steps (default the model's own), --style-word twemoji|noto appends
// the style word to its names, as half the training captions carry it ("red apple, twemoji").
//
// --dtype q8 generates with int8 UNet and text encoder weights (as `nuri generate --dtype q8`), so
// that every figure can be compared against the fp32 default.
//
// With --checkpoint, the UNet's weights come from a `nuri train unet` checkpoint folder (its EMA
// weights with --ema) on top of --model, the pipeline it trains in. --out writes the colour
// prompts' images side by side.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { COLOUR_PROMPTS, colourAgreement } from '../src/data/colour.ts';
import { EmojiDataset } from '../src/data/emoji-dataset.ts';
import { EMOJI_STYLES } from '../src/data/emoji.ts';
import { Generator, SafetensorsFile, Tensor, WEIGHT_DTYPES, type WeightDType, compile, sym } from '../src/engine/index.ts';
import { type RgbImage, imageToTensor } from '../src/io/image.ts';
import { writePng } from '../src/io/png.ts';
import { compileClipText } from '../src/models/clip-text.ts';
import { loadPipelineClip } from '../src/models/pipeline-clip.ts';
import { generate, samplerDefaults } from '../src/pipelines/generate.ts';
import { carriesReweightsByDefault } from '../src/pipelines/reweight-carry.ts';
import { StableDiffusion } from '../src/pipelines/stable-diffusion.ts';
import { SCHEDULER_NAMES, type SchedulerName } from '../src/schedulers/index.ts';
import { SAMPLER_LABELS } from '../src/schedulers/labels.ts';
import { tokenIds } from '../src/training/clip-training.ts';
import { type IdentityResult, emojiGallery, identityAgreement, identityNames, otherStyleReference, rankBands } from '../src/training/emoji-identity.ts';
import { type Embeddings, frechetDistance, retrievalTopK } from '../src/training/frechet.ts';
import { editChecks } from '../src/training/edit-checks.ts';
import { emptyEndOfText, isolatedWordStates } from '../src/training/unet-training.ts';

/** Images generated per pipeline call: a CFG batch of 2 × 25 keeps the UNet session's memory small. */
const GENERATE_BATCH = 25;
/** Seed of the untrained UNet's weights: scripts/train-default.ts starts the UNet stage from it. */
const UNTRAINED_SEED = 0;
const EVAL_SEED = 0;

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: join(import.meta.dirname, '..', 'models', 'default') },
    checkpoint: { type: 'string' },
    ema: { type: 'boolean', default: false },
    colours: { type: 'boolean', default: false },
    identity: { type: 'boolean', default: false },
    edits: { type: 'boolean', default: false },
    'edit-seeds': { type: 'string', default: '1,2,3' },
    names: { type: 'string', default: '300' },
    steps: { type: 'string', default: '15' },
    'eval-steps': { type: 'string', default: '20' },
    guidance: { type: 'string' },
    scheduler: { type: 'string', default: 'ddim' },
    'identity-steps': { type: 'string' },
    'style-word': { type: 'string' },
    seed: { type: 'string', default: '3' },
    count: { type: 'string', default: '200' },
    json: { type: 'string' },
    out: { type: 'string' },
    dtype: { type: 'string', default: 'fp32' },
    'empty-end-of-text': { type: 'boolean', default: false },
    'isolated-words': { type: 'boolean', default: false },
  },
});
const dtype = values.dtype as WeightDType;
if (!WEIGHT_DTYPES.includes(dtype)) throw new Error(`--dtype: expected one of ${WEIGHT_DTYPES.join(', ')}, got ${values.dtype}`);
const evalSteps = Number(values['eval-steps']);
const began = performance.now();
const seconds = (since = began) => (performance.now() - since) / 1000;

const sd = StableDiffusion.load(values.model!, { run: { dtype } });
// The model's own steps and guidance (30 at 7.5, or its nuri.json's), as `nuri generate` draws with them.
const own = samplerDefaults(sd, {});
if (values['empty-end-of-text']) {
  const encode = sd.encodeConditioning.bind(sd);
  sd.encodeConditioning = async (prompts, clipSkip) => {
    const [conditioning, empty] = await Promise.all([encode(prompts, clipSkip), encode([''], clipSkip)]);
    emptyEndOfText(sd.components.tokenizer, conditioning.states, prompts, empty.states);
    return conditioning;
  };
}
if (values['isolated-words']) {
  const { tokenizer, textEncoder } = sd.components;
  const graph = compileClipText(textEncoder, { length: tokenizer.modelMaxLength });
  const encode = sd.encodeConditioning.bind(sd);
  sd.encodeConditioning = async (prompts, clipSkip) => {
    const [conditioning, empty] = await Promise.all([encode(prompts, clipSkip), encode([''], clipSkip)]);
    const row = empty.states.length;
    for (const [i, prompt] of prompts.entries()) {
      if (prompt) conditioning.states.set(await isolatedWordStates(tokenizer, await graph, prompt, row / tokenizer.modelMaxLength), i * row);
    }
    emptyEndOfText(tokenizer, conditioning.states, prompts.map((p) => p || undefined), empty.states);
    return conditioning;
  };
}
const guidance = values.guidance === undefined ? own.guidance : Number(values.guidance);
if (!SCHEDULER_NAMES.includes(values.scheduler as SchedulerName)) throw new Error(`--scheduler: expected one of ${SCHEDULER_NAMES.join(', ')}, got ${values.scheduler}`);
const scheduler = values.scheduler as SchedulerName;
const identitySteps = values['identity-steps'] === undefined ? own.steps : Number(values['identity-steps']);
if (!(Number.isInteger(identitySteps) && identitySteps > 0)) throw new Error(`--identity-steps: expected a positive whole number, got ${values['identity-steps']}`);
const styleWord = values['style-word'];
if (styleWord !== undefined && !(EMOJI_STYLES as readonly string[]).includes(styleWord)) throw new Error(`--style-word: expected one of ${EMOJI_STYLES.join(', ')}, got ${styleWord}`);
if (values.checkpoint) {
  // As float32 whatever the file stores: a recipe's packed checkpoint (progress/unet-checkpoint) is float16.
  const file = SafetensorsFile.open(join(values.checkpoint, values.ema ? 'ema.safetensors' : 'weights.safetensors'));
  try {
    for (const p of sd.components.unet.parameters()) p.setValue(file.readFloat32(p.name));
  } finally {
    file.close();
  }
}

// ─── 1. colour words ────────────────────────────────────────────────────────────────────────────

async function colourCheck(): Promise<{ followed: number; total: number }> {
  const start = performance.now();
  const { images } = await generate(sd, { prompts: COLOUR_PROMPTS.map(([p]) => p), steps: Number(values.steps), guidance, seed: Number(values.seed), scheduler });
  let followed = 0;
  for (const { prompt, want, seen } of colourAgreement(images)) {
    if (seen === want) followed++;
    console.log(`${seen === want ? '✓' : '✗'} ${prompt.padEnd(18)} ${seen}${seen === want ? '' : ` (want ${want})`}`);
  }
  console.log(`${followed}/${COLOUR_PROMPTS.length} colours followed (${seconds(start).toFixed(1)} s)`);
  if (values.out) {
    await writePng(values.out, sideBySide(images));
    console.log(`wrote ${values.out}`);
  }
  return { followed, total: COLOUR_PROMPTS.length };
}

function sideBySide(images: RgbImage[]): RgbImage {
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
  return grid;
}

// ─── 2. retrieval and Fréchet distance in the model's CLIP space ────────────────────────────────

/** Unit-length rows, so that dot products are cosines (as CLIP compares). */
function unitRows(data: Float32Array, n: number): Embeddings {
  const dim = data.length / n;
  const out = new Float32Array(data.length);
  for (let i = 0; i < n; i++) {
    let norm = 0;
    for (let d = 0; d < dim; d++) norm += data[i * dim + d] ** 2;
    const scale = 1 / Math.sqrt(norm);
    for (let d = 0; d < dim; d++) out[i * dim + d] = data[i * dim + d] * scale;
  }
  return { data: out, n, dim };
}

/** The model's CLIP as two sessions: captions → text embeddings, images (0..1) → image embeddings. */
async function clipEmbedder(modelDir: string) {
  const clip = loadPipelineClip(modelDir);
  const tokenizer = sd.components.tokenizer;
  const length = clip.config.text_config.max_position_embeddings;
  const text = await compileClipText(clip.text, { length });
  const { num_channels: numChannels, image_size: imageSize } = clip.config.vision_config;
  const pixels = Tensor.input('pixel_values', [sym('B'), numChannels, imageSize, imageSize]);
  const vision = await compile({ inputs: [pixels], outputs: { image_embeds: clip.vision.forward(pixels).imageEmbeds! } });
  return {
    async captions(captions: readonly string[]): Promise<Embeddings> {
      const out = await text.run({ input_ids: tokenIds(tokenizer, captions, length) });
      return unitRows(out.text_embeds.data as Float32Array, captions.length);
    },
    async images(images: readonly RgbImage[]): Promise<Embeddings> {
      for (const image of images) {
        if (image.width !== imageSize || image.height !== imageSize) throw new Error(`CLIP's image tower takes ${imageSize}×${imageSize} images, got ${image.width}×${image.height}`);
      }
      // The recipe trains CLIP on pixels in [-1, 1] (EmojiDataset.batch), not CLIP's mean/std.
      const out = await vision.run({ pixel_values: { data: imageToTensor(images, '-1..1'), shape: [images.length, numChannels, imageSize, imageSize] } });
      return unitRows(out.image_embeds.data as Float32Array, images.length);
    },
  };
}

/** m indices spread evenly over 0..n−1 (all of them when n ≤ m): a fixed pick across the set's order. */
function evenlySpaced(n: number, m: number): number[] {
  const k = Math.min(n, m);
  return Array.from({ length: k }, (_, i) => Math.floor((i * n) / k));
}

/** One image per caption, image i from seed EVAL_SEED + i whatever the batching. */
async function sample(pipeline: StableDiffusion, captions: readonly string[], label: string, steps = evalSteps): Promise<RgbImage[]> {
  const start = performance.now();
  const images: RgbImage[] = [];
  for (let i = 0; i < captions.length; i += GENERATE_BATCH) {
    const prompts = captions.slice(i, i + GENERATE_BATCH);
    images.push(...(await generate(pipeline, { prompts, steps, guidance, seed: EVAL_SEED + i, scheduler })).images);
    console.error(`  ${label}: ${images.length}/${captions.length} images (${seconds(start).toFixed(0)} s)`);
  }
  return images;
}

interface Scores {
  top1: number;
  top5: number;
  /** Fréchet distance to the real images of the same set (for real images: see `realVsReal`). */
  fd?: number;
}
interface SplitResult {
  images: number;
  distinctCaptions: number;
  chance: Scores;
  real: Scores;
  generated: Scores;
  untrained: Scores;
}
interface Evaluation {
  splits: Record<'heldout' | 'train', SplitResult>;
  /** FD between the real held-out and real training images: two real sets of different emoji. */
  realVsReal: number;
}

async function evaluate(): Promise<Evaluation> {
  const embed = await clipEmbedder(values.model!);
  const untrained = StableDiffusion.load(values.model!, { run: { dtype } });
  untrained.components.unet.init(new Generator(UNTRAINED_SEED));
  const count = Number(values.count);
  const splits = {} as Evaluation['splits'];
  const realEmbeds: Embeddings[] = [];
  for (const split of ['heldout', 'train'] as const) {
    const data = await EmojiDataset.load({ size: sd.defaultSize, includeSkinTones: false, split });
    const items = evenlySpaced(data.length, count).map((i) => data.items[i]);
    const captions = items.map((item) => item.caption);
    const captionEmbeds = await embed.captions(captions);
    const scores = (images: Embeddings, real?: Embeddings): Scores => {
      const [top1, top5] = retrievalTopK(images, captionEmbeds, captions, [1, 5]);
      return { top1, top5, ...(real ? { fd: frechetDistance(images, real) } : {}) };
    };
    const name = split === 'heldout' ? 'held-out' : 'train';
    const real = await embed.images(items.map((item) => item.image));
    realEmbeds.push(real);
    const generated = await embed.images(await sample(sd, captions, `generated, ${name}`));
    const fresh = await embed.images(await sample(untrained, captions, `untrained, ${name}`));
    const distinct = new Set(captions).size;
    splits[split] = {
      images: items.length,
      distinctCaptions: distinct,
      chance: { top1: 1 / distinct, top5: Math.min(5, distinct) / distinct },
      real: scores(real),
      generated: scores(generated, real),
      untrained: scores(fresh, real),
    };
  }
  return { splits, realVsReal: frechetDistance(realEmbeds[0], realEmbeds[1]) };
}

function table({ splits, realVsReal }: Evaluation): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const fd = (x: number | undefined) => (x === undefined ? '' : x.toFixed(3));
  const h = splits.heldout;
  const t = splits.train;
  const row = (label: string, a: Scores, b: Scores, fdA: string, fdB: string) =>
    `| ${label} | ${pct(a.top1)} | ${pct(a.top5)} | ${fdA} | ${pct(b.top1)} | ${pct(b.top5)} | ${fdB} |`;
  return [
    `| images | held-out top-1 | held-out top-5 | held-out FD | train top-1 | train top-5 | train FD |`,
    `|---|---:|---:|---:|---:|---:|---:|`,
    row('real', h.real, t.real, `${fd(realVsReal)} †`, `${fd(realVsReal)} †`),
    row('generated', h.generated, t.generated, fd(h.generated.fd), fd(t.generated.fd)),
    row('untrained UNet', h.untrained, t.untrained, fd(h.untrained.fd), fd(t.untrained.fd)),
    row('chance', h.chance, t.chance, '', ''),
    '',
    `Held-out: ${h.images} images, ${h.distinctCaptions} distinct captions; train: ${t.images} images (evenly spaced over the split), ` +
      `${t.distinctCaptions} distinct captions. Retrieval ranks each image's own caption among the set's distinct captions ` +
      `with the model's CLIP. FD: Fréchet distance to the real images of the same set in CLIP's unit-length image-embedding space.`,
    `† real-vs-real reference: FD between the real held-out and the real training images (different emoji, same styles).`,
    `Generated: ${SAMPLER_LABELS[scheduler]} ${evalSteps} steps, guidance ${guidance}, image i from seed ${EVAL_SEED} + i; untrained: the same pipeline with the UNet freshly initialised (seed ${UNTRAINED_SEED}).`,
  ].join('\n');
}

// ─── 3. identity: is the picture the named emoji? ───────────────────────────────────────────────

type Score = Omit<IdentityResult, 'nearest' | 'ranks'>;
/** Per name, for --json: the own emoji's rank (1: nearest) and the 5 nearest images' emoji. */
type NameResult = { name: string; key: string; rank: number | null; nearest: string[] };
type Identity = Record<'train' | 'heldout', Score & { ranks: Record<string, number>; otherStyle: Score; names: NameResult[] }>;

async function identityCheck(): Promise<Identity> {
  const start = performance.now();
  const size = sd.defaultSize;
  const gallery = await emojiGallery(size);
  const result = {} as Identity;
  for (const split of ['train', 'heldout'] as const) {
    const names = await identityNames(size, split, Number(values.names));
    // The captions' own form with a style word ("red apple, twemoji"), when asked.
    const images = await sample(sd, names.map((n) => (styleWord ? `${n.name}, ${styleWord}` : n.name)), `identity, ${split}`, identitySteps);
    const { nearest, ranks, ...score } = identityAgreement(gallery, images, names.map((n) => n.key));
    const { nearest: _, ranks: __, ...otherStyle } = otherStyleReference(gallery, names);
    const byName = names.map(({ name, key }, i) => ({ name, key, rank: Number.isFinite(ranks[i]) ? ranks[i] + 1 : null, nearest: nearest[i].map((j) => gallery.keys[j]) }));
    result[split] = { ...score, ranks: rankBands(ranks), otherStyle, names: byName };
    const pct = (s: Score) => `${s.hits}/${s.total} = ${(100 * s.rate).toFixed(1)}%`;
    console.log(`identity, ${split === 'train' ? 'training names' : 'held-out names'}: ${pct(score)} ` +
      `have their own emoji among the 5 nearest of ${gallery.images.length} real images ` +
      `(reference: a real image, left out, finds its other style for ${pct(otherStyle)})`);
    console.log(`  rank of the own emoji's nearest image: ${Object.entries(result[split].ranks).map(([band, n]) => `${band}: ${n}`).join(', ')}`);
  }
  console.log(`identity: ${size}×${size}, ${SAMPLER_LABELS[scheduler]} ${identitySteps} steps, guidance ${guidance}, ${dtype} weights${styleWord ? `, names with ", ${styleWord}"` : ''}${values['empty-end-of-text'] ? ', end-of-text states emptied' : ''}${values['isolated-words'] ? ', words isolated' : ''}, name i from seed ${EVAL_SEED} + i (${seconds(start).toFixed(0)} s)`);
  return result;
}

const settings = { model: values.model, checkpoint: values.checkpoint ?? null, ema: values.ema, dtype, evalSteps, guidance, scheduler, identitySteps, styleWord: styleWord ?? null, seed: EVAL_SEED, untrainedSeed: UNTRAINED_SEED, emptyEndOfText: values['empty-end-of-text'], isolatedWords: values['isolated-words'], reweightCarry: carriesReweightsByDefault(sd) };
function writeJson(result: Record<string, unknown>): void {
  if (!values.json) return;
  writeFileSync(values.json, `${JSON.stringify({ settings, ...result, wallSeconds: Math.round(seconds()) }, null, 2)}\n`);
  console.log(`wrote ${values.json}`);
}

async function promptToPromptCheck() {
  const start = performance.now();
  const seeds = values['edit-seeds']!.split(',').map(Number);
  const edits = await editChecks(sd, { seeds, onLine: (line) => console.log(line) });
  console.log(`Prompt-to-Prompt: ${sd.defaultSize}×${sd.defaultSize}, DDIM ${own.steps} steps, guidance ${own.guidance}, seeds ${seeds.join(', ')} (${seconds(start).toFixed(0)} s)`);
  return edits;
}

if (values.identity) {
  writeJson({ identity: await identityCheck() });
} else if (values.edits) {
  writeJson({ edits: await promptToPromptCheck() });
} else {
  const colours = await colourCheck();
  if (!values.colours) {
    const identity = await identityCheck();
    const edits = await promptToPromptCheck();
    const evaluation = await evaluate();
    const wall = seconds();
    console.log(`\n${table(evaluation)}\n\nwall time ${(wall / 60).toFixed(1)} min (${wall.toFixed(0)} s)`);
    writeJson({ colours, identity, edits, ...evaluation });
  }
}
