// The example pictures of the default model (issue 6), `npm run examples:default`:
//
//   npx tsx scripts/default-examples.ts [--model models/default] [--out docs/default-model] [--work .cache/default-examples]
//
// Makes, from scratch and deterministically (fixed seeds), OUT/grid.png (64 prompts), OUT/p2p-cat-to-dog.png,
// OUT/p2p-reweight.png, OUT/p2p-local-blend.png and OUT/p2p-heat-maps.png (Prompt-to-Prompt), OUT/textual-inversion.png and
// OUT/dreambooth.png, and
// OUT/README.md with the command lines that made them and their wall times. Everything but the
// grid is made by running `nuri` itself, so the README shows commands a reader can run; the grid's
// 64 images come from the pipeline API in one process (64 CLI starts would be most of the time),
// image i with the settings and seed of `nuri generate --seed 1000+i`. Intermediate files (instance
// images, trained embeddings and adapters, the CLI's own PNGs) go to WORK.
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { emojiRecords, readEmojiImage, type Split } from '../src/data/emoji.ts';
import { readSafetensors } from '../src/engine/safetensors.ts';
import { imageGrid } from '../src/io/grid.ts';
import { type RgbImage, createImage, enlarge, imageFromTensor, readImage } from '../src/io/image.ts';
import { writePng } from '../src/io/png.ts';
import type { Shape4 } from '../src/models/vae-runner.ts';
import { generate, samplerDefaults } from '../src/pipelines/generate.ts';
import { StableDiffusion } from '../src/pipelines/stable-diffusion.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/default' },
    out: { type: 'string', default: 'docs/default-model' },
    work: { type: 'string', default: '.cache/default-examples' },
  },
});
const model = args.model!;
const out = args.out!;
const work = args.work!;
const nuriBin = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'nuri.js');

/** Every picture is sampled alike: DDIM, 20 steps, at the model's own guidance (its nuri.json). */
const SAMPLING = ['--steps', '20', '--scheduler', 'ddim'];
/** Tiles are enlarged (nearest neighbour) to about 128 px, so that a small model's pictures can be seen. */
const zoomFor = (size: number) => Math.max(1, Math.round(128 / size));
const GRID_SEED = 1000;
/** Images per pipeline call for the grid: a CFG batch of 2 × 16 keeps the UNet's memory small. */
const GRID_BATCH = 16;
/** Training captions of the emoji set (docs/DATA.md), a row per theme. */
const GRID_PROMPTS = [
  'grinning face', 'smiling face', 'winking face', 'crying face', 'angry face', 'sleeping face', 'thinking face', 'face with tears of joy',
  'cat face', 'dog face', 'mouse face', 'rabbit face', 'tiger face', 'bear face', 'panda face', 'frog face',
  'heart', 'blue heart', 'green heart', 'yellow heart', 'purple heart', 'orange heart', 'white heart', 'broken heart',
  'large red circle', 'large blue circle', 'large orange circle', 'large yellow circle', 'large purple circle', 'large red square', 'large blue square', 'large green square',
  'red apple', 'green apple', 'banana', 'grapes', 'watermelon', 'cherries', 'strawberry', 'lemon',
  'sunny', 'cloud', 'rainbow', 'snowflake', 'crescent moon', 'glowing star', 'fire', 'evergreen tree',
  'hamburger', 'hot dog', 'taco', 'birthday cake', 'doughnut', 'cookie', 'ice cream', 'mushroom',
  'automobile', 'taxi', 'bus', 'police car', 'fire engine', 'bicycle', 'airplane', 'rocket',
];
/**
 * The word swap, for several seeds so that the picture is not one lucky draw: with the paper's
 * settings (cross-attention tied for 80% of the steps, self-attention for 40%) and tied harder,
 * `--cross-replace` and `--self-replace` as given.
 */
const SWAP = { source: 'cat face', target: 'dog face', seeds: [4, 6, 8], strong: { cross: '1', self: '0.8' } };
/** Issue 11 asks that a weight of 2–3 visibly strengthen a colour word; 0 and 0.5 show whether the colour comes from it at all. */
const REWEIGHT = { prompt: 'blue heart', word: 'blue', factors: [0, 0.5, 2, 3], seeds: [1, 2] };
/** Local blend: the edit is kept only where the word's attention is, the rest stays the source's. */
const BLEND = { source: 'red heart', target: 'green heart', word: 'heart', seeds: [1, 2, 3] };
/** Heat maps: where each word's cross-attention lies (issue 11: a noun's map should land on the object). */
const HEAT_MAPS: [string, number][] = [['red apple', 1], ['dog face', 2], ['blue heart', 1]];
/** Images per prompt in the personalisation pictures, from seed PERSONAL_SEED on. */
const PERSONAL_COUNT = 6;
const PERSONAL_SEED = 7;
/**
 * Textual Inversion trains no model weight: it can only find a word for something the frozen
 * model can already draw, so its subject comes from the training set. DreamBooth's is held out
 * (never trained on), to show that fine-tuning teaches the model something new.
 */
const TI = { subject: 'red apple', split: 'train' as Split, token: '<my-fruit>', init: 'fruit', steps: 1000, lr: 5e-3 };
const DB = { subject: 'skull', split: 'heldout' as Split, instancePrompt: 'sks face', classPrompt: 'face', classImages: 24, rank: 8, steps: 600, lr: 3e-3 };

interface Part {
  title: string;
  /** Command lines as run, each with its wall time in seconds (none for the grid's stand-in). */
  commands: [string, number?][];
  seconds: number;
}

const parts: Part[] = [];
let current: Part | undefined;

/** Times one part of the work; the commands it runs are recorded under it. */
async function part(title: string, body: () => Promise<void>): Promise<void> {
  console.log(`\n── ${title}`);
  current = { title, commands: [], seconds: 0 };
  const start = performance.now();
  await body();
  current.seconds = (performance.now() - start) / 1000;
  parts.push(current);
  console.log(`── ${title}: ${current.seconds.toFixed(0)} s`);
}

/** Quotes an argument for a POSIX shell when it needs it (prompts, tokens). */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `"${word.replace(/(["\\$`])/g, '\\$1')}"`;
}

/** Runs `nuri ARGS` as a child process (the real CLI), printing and recording the command line. */
function nuri(...argv: string[]): void {
  const line = `npx nuri ${argv.map(shellWord).join(' ')}`;
  console.log(`$ ${line}`);
  const start = performance.now();
  const result = spawnSync(process.execPath, [nuriBin, ...argv], { stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`failed (${result.signal ?? `exit ${result.status}`}): ${line}`);
  current!.commands.push([line, (performance.now() - start) / 1000]);
}

interface Tile {
  image?: RgbImage;
  label: string;
}

/** Enlarged tiles with their captions, `columns` a row; a tile without an image is left blank. */
async function writeTiles(name: string, tiles: Tile[], columns: number): Promise<void> {
  const side = tiles.find((t) => t.image)!.image!.width;
  const images = tiles.map((t) => enlarge(t.image ?? createImage(side, side, [1, 1, 1]), zoomFor(side)));
  // Captions shrink to fit under their tile (≈ 0.55 em per character).
  const longest = Math.max(...tiles.map((t) => t.label.length));
  const fontSize = Math.max(8, Math.min(14, Math.floor(images[0].width / (0.55 * longest))));
  const grid = await imageGrid(images, { columns, padding: 6, labels: tiles.map((t) => t.label), fontSize });
  await writePng(join(out, name), grid);
  console.log(`wrote ${join(out, name)}`);
}

/** The images `nuri generate --batch N --out FILE` wrote: FILE-1.png … FILE-N.png. */
function batchImages(file: string, count: number): Promise<RgbImage[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => readImage(file.replace(/\.png$/, `-${i + 1}.png`))));
}

/** Both styles' images of one emoji, written at the model's size into `dir` as training images; as tiles. */
async function writeInstances(dir: string, subject: string, split: Split, size: number): Promise<Tile[]> {
  const records = emojiRecords({ includeSkinTones: false, styleWord: 'never', split, filter: (r) => r.name === subject });
  if (records.length === 0) throw new Error(`no ${split} emoji named "${subject}"`);
  mkdirSync(dir, { recursive: true });
  return Promise.all(
    records.map(async (r) => {
      const image = await readEmojiImage(r, size);
      await writePng(join(dir, `${r.style}.png`), image);
      return { image, label: `training: ${r.style}` };
    }),
  );
}

/** The source and edit rows of `nuri edit --save-latents FILE`, decoded. */
async function editImages(sd: StableDiffusion, file: string): Promise<[RgbImage, RgbImage]> {
  const latents = readSafetensors(file).get('latents')!;
  const decoded = await sd.vaeRunner.decodeLatents(latents.data as Float32Array, latents.shape as unknown as Shape4);
  return [imageFromTensor(decoded.data, 0, decoded.shape, '0..1'), imageFromTensor(decoded.data, 1, decoded.shape, '0..1')];
}

async function main(): Promise<void> {
  const started = performance.now();
  // Each run starts afresh: training refuses an --out that holds checkpoints, and class images
  // left from another model would be reused.
  for (const dir of ['p2p', 'ti', 'ti-images', 'db', 'db-images']) rmSync(join(work, dir), { recursive: true, force: true });
  for (const dir of [out, join(work, 'p2p'), join(work, 'ti'), join(work, 'db')]) mkdirSync(dir, { recursive: true });
  const sd = StableDiffusion.load(model);
  const size = sd.defaultSize;
  const seeded = (seed: number) => ['--seed', String(seed)];

  await part('64 prompts', async () => {
    const images: RgbImage[] = [];
    for (let i = 0; i < GRID_PROMPTS.length; i += GRID_BATCH) {
      const prompts = GRID_PROMPTS.slice(i, i + GRID_BATCH);
      const result = await generate(sd, { prompts, steps: 20, scheduler: 'ddim', seed: GRID_SEED + i });
      images.push(...result.images);
    }
    const line = `npx nuri generate --model ${model} "PROMPT" ${SAMPLING.join(' ')} --seed ${GRID_SEED}+i`;
    console.log(`generated ${images.length} images as by: ${line}`);
    current!.commands.push([line]);
    await writeTiles('grid.png', images.map((image, i) => ({ image, label: GRID_PROMPTS[i] })), 8);
  });

  await part(`Prompt-to-Prompt: ${SWAP.source} → ${SWAP.target}`, async () => {
    const { source, target, seeds, strong } = SWAP;
    const tiles: Tile[] = [];
    for (const seed of seeds) {
      const edits: RgbImage[] = [];
      for (const [name, tie] of [['paper', []], ['strong', ['--cross-replace', strong.cross, '--self-replace', strong.self]]] as const) {
        const file = join(work, 'p2p', `swap-${seed}-${name}`);
        nuri('edit', '--model', model, '--prompt', source, '--target', target, ...tie, ...SAMPLING, ...seeded(seed), '--save-latents', `${file}.safetensors`, '--out', `${file}.png`);
        edits.push(...(await editImages(sd, `${file}.safetensors`)));
      }
      const plain = join(work, 'p2p', `plain-${seed}.png`);
      nuri('generate', '--model', model, target, ...SAMPLING, ...seeded(seed), '--out', plain);
      tiles.push(
        { image: edits[0], label: `${source}, seed ${seed}` },
        { image: edits[1], label: `edit, 0.8/0.4` },
        { image: edits[3], label: `edit, ${strong.cross}/${strong.self}` },
        { image: await readImage(plain), label: `${target} alone` },
      );
    }
    await writeTiles('p2p-cat-to-dog.png', tiles, 4);
  });

  await part(`Prompt-to-Prompt: re-weighting "${REWEIGHT.word}"`, async () => {
    const { prompt, word, factors, seeds } = REWEIGHT;
    const tiles: Tile[] = [];
    for (const seed of seeds) {
      const row = new Map<number, RgbImage>();
      for (const factor of factors) {
        const latents = join(work, 'p2p', `reweight-${seed}-${factor}.safetensors`);
        nuri('edit', '--model', model, '--prompt', prompt, '--reweight', `${word}=${factor}`, '--cross-replace', '1', ...SAMPLING, ...seeded(seed), '--save-latents', latents, '--out', join(work, 'p2p', `reweight-${seed}-${factor}.png`));
        const [source, edited] = await editImages(sd, latents);
        row.set(1, source).set(factor, edited);
      }
      for (const factor of [...row.keys()].sort((a, b) => a - b)) {
        tiles.push({ image: row.get(factor), label: factor === 1 ? `${prompt}, seed ${seed}` : `${word} × ${factor}` });
      }
    }
    await writeTiles('p2p-reweight.png', tiles, factors.length + 1);
  });

  await part(`Prompt-to-Prompt: local blend on "${BLEND.word}"`, async () => {
    const { source, target, word, seeds } = BLEND;
    const tiles: Tile[] = [];
    for (const seed of seeds) {
      const row: Tile[] = [];
      for (const [name, blend] of [['edit', []], ['blend', ['--local-blend', word]]] as const) {
        const file = join(work, 'p2p', `blend-${seed}-${name}`);
        nuri('edit', '--model', model, '--prompt', source, '--target', target, ...blend, ...SAMPLING, ...seeded(seed), '--save-latents', `${file}.safetensors`, '--out', `${file}.png`);
        const [from, edited] = await editImages(sd, `${file}.safetensors`);
        if (name === 'edit') row.push({ image: from, label: `${source}, seed ${seed}` });
        row.push({ image: edited, label: name === 'edit' ? target : `${target}, blend "${word}"` });
      }
      tiles.push(...row);
    }
    await writeTiles('p2p-local-blend.png', tiles, 3);
  });

  await part('Prompt-to-Prompt: heat maps', async () => {
    const strips: RgbImage[] = [];
    for (const [prompt, seed] of HEAT_MAPS) {
      const file = join(work, 'p2p', `heat-${prompt.replace(/ /g, '-')}-${seed}.png`);
      nuri('attention', '--model', model, '--prompt', prompt, ...SAMPLING, ...seeded(seed), '--out', file);
      strips.push(await readImage(file));
    }
    await writePng(join(out, 'p2p-heat-maps.png'), await imageGrid(strips, { columns: 1, padding: 6 }));
    console.log(`wrote ${join(out, 'p2p-heat-maps.png')}`);
  });

  await part('Textual Inversion', async () => {
    const images = join(work, 'ti-images');
    const instances = await writeInstances(images, TI.subject, TI.split, size);
    nuri('train', 'textual-inversion', '--model', model, '--images', images, '--token', TI.token, '--init-token', TI.init, '--steps', String(TI.steps), '--lr', String(TI.lr), '--batch', '2', '--resolution', String(size), '--out', join(work, 'ti'));
    const [learned, init] = [join(work, 'ti', 'token.png'), join(work, 'ti', 'init.png')];
    const embedding = join(work, 'ti', 'learned_embeds.safetensors');
    nuri('generate', '--model', model, '--embedding', embedding, TI.token, ...SAMPLING, ...seeded(PERSONAL_SEED), '--batch', String(PERSONAL_COUNT), '--out', learned);
    nuri('generate', '--model', model, TI.init, ...SAMPLING, ...seeded(PERSONAL_SEED), '--batch', String(PERSONAL_COUNT), '--out', init);
    await writeTiles(
      'textual-inversion.png',
      [
        ...padRow(instances),
        ...(await batchImages(learned, PERSONAL_COUNT)).map((image) => ({ image, label: TI.token })),
        ...(await batchImages(init, PERSONAL_COUNT)).map((image) => ({ image, label: TI.init })),
      ],
      PERSONAL_COUNT,
    );
  });

  await part('DreamBooth', async () => {
    const images = join(work, 'db-images');
    const instances = await writeInstances(images, DB.subject, DB.split, size);
    const db = join(work, 'db');
    nuri('train', 'dreambooth', '--model', model, '--images', images, '--instance-prompt', DB.instancePrompt, '--class-prompt', DB.classPrompt, '--class-images', String(DB.classImages), '--class-steps', '20', '--prior-loss-weight', '1', '--lora-rank', String(DB.rank), '--steps', String(DB.steps), '--lr', String(DB.lr), '--resolution', String(size), '--out', db);
    const lora = join(db, 'pytorch_lora_weights.safetensors');
    const [instance, after, before] = [join(db, 'instance.png'), join(db, 'class-after.png'), join(db, 'class-before.png')];
    const batch = [...SAMPLING, ...seeded(PERSONAL_SEED), '--batch', String(PERSONAL_COUNT)];
    nuri('generate', '--model', model, '--lora', lora, DB.instancePrompt, ...batch, '--out', instance);
    nuri('generate', '--model', model, '--lora', lora, DB.classPrompt, ...batch, '--out', after);
    nuri('generate', '--model', model, DB.classPrompt, ...batch, '--out', before);
    await writeTiles(
      'dreambooth.png',
      [
        ...padRow(instances),
        ...(await batchImages(instance, PERSONAL_COUNT)).map((image) => ({ image, label: DB.instancePrompt })),
        ...(await batchImages(after, PERSONAL_COUNT)).map((image) => ({ image, label: `${DB.classPrompt}, with LoRA` })),
        ...(await batchImages(before, PERSONAL_COUNT)).map((image) => ({ image, label: `${DB.classPrompt}, base model` })),
      ],
      PERSONAL_COUNT,
    );
  });

  writeReadme((performance.now() - started) / 1000, size);
}

/** A row of PERSONAL_COUNT tiles, blank after the given ones. */
function padRow(tiles: Tile[]): Tile[] {
  return [...tiles, ...Array.from({ length: PERSONAL_COUNT - tiles.length }, () => ({ label: '' }))];
}

function seconds(s: number): string {
  return s >= 90 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`;
}

/** The commands of a part, each followed by its wall time. */
function commandBlock(index: number): string {
  const lines = parts[index].commands.map(([line, s]) => (s === undefined ? line : `${line}   # ${seconds(s)}`));
  return ['```sh', ...lines, '```'].join('\n');
}

function section(index: number, picture: string, text: string): string {
  const p = parts[index];
  return `## ${p.title}\n\n![${p.title}](${picture})\n\n${text}\n\n${commandBlock(index)}\n\nWall time: ${seconds(p.seconds)}.\n`;
}

function writeReadme(total: number, size: number): void {
  const readme = `# Pictures from the default model

Made by \`npm run examples:default\` (scripts/default-examples.ts) from \`${model}\`, from scratch,
with fixed seeds; ${seconds(total)} in all on a machine with ${cpus().length} CPU cores. The commands below are the ones it ran, from the repository root, with its work folder
\`${work}\`; every picture is sampled with DDIM, 20 steps, the model's own guidance (${samplerDefaults(StableDiffusion.load(model), {}).guidance}, its \`nuri.json\`), and shown ${zoomFor(size)}× enlarged
(the model draws ${size}×${size}). Images made with this model derive from Twemoji graphics by Twitter, Inc.
and other contributors, licensed under CC-BY 4.0, and Noto Emoji by Google LLC (Apache 2.0).

${section(0, 'grid.png', `Sixty-four captions of the training set, a row per theme (faces, animal faces, hearts, circles
and squares, fruit, sky, food, vehicles). They were made in one process with the pipeline API,
${GRID_BATCH} at a time; image *i* (row by row, from 0) is what this command makes with \`--seed ${GRID_SEED}+i\`:`)}
${section(1, 'p2p-cat-to-dog.png', `Word swap with \`nuri edit\`, one row per seed: the source "${SWAP.source}"; the edit to "${SWAP.target}", denoised
together with the source from the same noise, with the paper's settings (its cross-attention tied
to the source's for 80% of the steps, its self-attention for 40%) and tied harder
(\`--cross-replace ${SWAP.strong.cross} --self-replace ${SWAP.strong.self}\`); and "${SWAP.target}" from the same seed without
Prompt-to-Prompt. The plain pictures of seeds 6 and 8 are a whole standing dog; at the paper's
settings their edits break into fragments of such a dog, and tied harder they keep the source's
round head and draw dark eyes and brown colouring into it. Seed 4's plain picture is a doghouse, and
both its edits draw a face under a roof-like outline.`)}
${section(2, 'p2p-reweight.png', `Re-weighting one word of the same prompt (\`--reweight ${REWEIGHT.word}=F\`, applied over all the steps with
\`--cross-replace 1\`), one row per seed with the unedited picture in the middle (× 1). The model's
\`nuri.json\` carries a re-weight into the words after the word (\`reweightCarry\`;
\`--no-reweight-carry\` re-weights the attention alone, as the paper does, and then nothing here
changes): at 0, "heart" no longer carries "blue", and both seeds draw the red heart the model
draws for "heart" alone; at 0.5 a pink one. At 2 and 3 nothing visible changes: above 1 only the
word's attention is scaled, and this model draws the colour mostly from the words after it.`)}
${section(3, 'p2p-local-blend.png', `Local blend, one row per seed: the source "${BLEND.source}"; the word swap to "${BLEND.target}" with the paper's
settings; and the same swap with \`--local-blend ${BLEND.word}\`, which keeps the edit only where "${BLEND.word}"'s
cross-attention lies (above 0.3 of the mask's peak, the default threshold) and resets the rest
to the source at every step. Here the sources are red blobs rather than hearts and the swap draws
a green apple or heart over them. Since the seventh cycle the maps lie on the object, so the blend
does act, and it does not help: the blended edits keep the white around the object but come out
dark and broken, mixing the source's red and the edit's green inside it (a lower
\`--blend-threshold\`, 0.1 or 0.05, keeps more of the green).`)}
${section(4, 'p2p-heat-maps.png', `Heat maps with \`nuri attention\`: the picture, then each word's cross-attention (the 16×16 layers',
averaged over heads, layers and steps; brighter is more). The model was trained to put its words'
attention on the object (\`nuri train unet --grounding\`, recipes/default-v7 and -v11): both words of
"red apple" cover the apple and leave the white around it dark; the maps of "dog face" follow the
figure drawn, more thinly; "blue" and "heart" both take the heart's shape. Before the sixth cycle every
map was an even speckle over the whole picture.`)}
${section(5, 'textual-inversion.png', `A new word \`${TI.token}\` learnt from two pictures (top row: the Twemoji and Noto "${TI.subject}"),
starting from the embedding of "${TI.init}"; then the new word as the prompt (middle row) and the
word it started from (bottom row), same seeds. Textual Inversion trains no model weight, only the
new word's embedding row, so it can name only what the model can already draw: its subject is
taken from the training set (DreamBooth, below, teaches the model a subject it never saw).`)}
${section(6, 'dreambooth.png', `DreamBooth with class-prior preservation on a subject the model never saw: the held-out "${DB.subject}"
(top row, both styles; the held-out split is never trained on). Rank-${DB.rank} LoRA adapters are trained
on "${DB.instancePrompt}" for the instance images and on "${DB.classPrompt}" for ${DB.classImages} pictures the model made of the
class first; then, with the same seeds: "${DB.instancePrompt}" with the adapters, "${DB.classPrompt}" with the adapters,
and "${DB.classPrompt}" from the model without them. The instance prompt draws the subject; prior
preservation is meant to keep the class as it was, and here does not: "${DB.classPrompt}" with the adapters
turns into more orange faces with the skull's blue-grey in their eyes and white patches of teeth (a stronger
--prior-loss-weight or more class images hold it closer).`)}`;
  const path = join(out, 'README.md');
  writeFileSync(`${path}.tmp`, readme);
  renameSync(`${path}.tmp`, path);
  console.log(`wrote ${path}`);
}

await main();
