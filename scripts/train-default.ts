// `npm run train:default`: the recipe that trains Nuri's default model from the emoji set, in Stable
// Diffusion's stages, each with the same code as `nuri train`:
//
//   vae        nuri train vae   — AutoencoderKL from RECIPE/vae.json (reconstruction + KL)
//   latents    the VAE's latent scale (1 / std of the training latents) and held-out PSNR
//   clip       nuri train clip  — text and image towers, contrastive, the real CLIP BPE vocabulary
//   base       a pipeline folder: that VAE and text encoder, a fresh UNet (RECIPE/unet.json), or
//              one started from a trained UNet's weights (training.json's `unetFrom`)
//   unet       nuri train unet  — DDPM ε-loss, cross-attention on the frozen text encoder's token
//              states, caption dropout for classifier-free guidance, EMA weights
//   assemble   the model folder: the pipeline plus the CLIP image tower (image_encoder/), fp16
//   identity   (when training.json has "identity") the identity figure of scripts/eval-default.ts
//              at every milestone of the UNet stage: its EMA weights every `every` steps, kept
//              while it trains (WORK/unet/milestones) and measured afterwards (WORK/identity/)
//
// RECIPE is --recipe (default recipes/default-v11, the shipped model: the 64×64 second generation,
// recipes/default-v2, carried on with a second learning-rate cycle (recipes/default-v3), a third
// that empties half the captions' end-of-text states (recipes/default-v4), a fourth and a fifth
// that also isolate 30% and then 60% of the captions' words (recipes/default-v5, -v6), a sixth
// that grounds the words' cross-attention on the object (recipes/default-v7) and a seventh on v7's
// weights (recipes/default-v11, which takes v7's stages and UNet from its packed progress);
// recipes/default is the 32×32 first generation; recipes/default-v8, a wider UNet, and -v9 and -v10,
// the caption pooled into the UNet's time embedding, are probes; recipes/default-v12, finished and not yet shipped,
// an eighth cycle).
// Hyperparameters are in RECIPE/training.json, which also names the work folder
// (~/.cache/nuri/<work>, or $NURI_TRAIN_DIR, or --work) and where the model
// goes (`output`, relative to the repository; without it WORK/model, so a recipe in progress never
// replaces the shipped models/default). The work folder is outside the repository so a fresh
// checkout keeps the progress. Re-running continues: finished stages are skipped
// (WORK/stages/<name>.json), an interrupted one resumes from its last checkpoint (even after
// kill -9: checkpoints are written atomically), and a stage whose inputs were made again after it
// started starts afresh (its old work is discarded, its time kept as "discarded" in the cost
// table). `kill -TERM` (or Ctrl-C) stops at a checkpoint. A machine that is not kept between
// sittings carries the run in git: `--pack` writes RECIPE/progress (finished stages and the UNet's
// newest weights, src/training/carry.ts) to commit, and a run whose work folder is empty starts
// from it (or, with training.json's `stagesFrom`, from another recipe's finished VAE and CLIP).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { checkpointName } from '../src/training/checkpoint.ts';
import { keepMilestones } from '../src/training/checkpoint-milestones.ts';
import { describeProgress, packProgress, unpackProgress } from '../src/training/carry.ts';
import type { ModelDefaults } from '../src/models/load.ts';
import { STARTED_FROM_COST, assembleDefaultModel, measureLatents, unetLineageSeconds, writeBasePipeline } from '../src/training/default-model.ts';

const REPO = resolve(import.meta.dirname, '..');

const { values: args } = parseArgs({
  options: {
    recipe: { type: 'string', default: join(REPO, 'recipes', 'default-v11') },
    work: { type: 'string' },
    tokenizer: { type: 'string', default: resolve(REPO, '..', 'shared', 'fixtures', 'tiny-sd', 'tokenizer') },
    out: { type: 'string' },
    plan: { type: 'string' },
    /** Write RECIPE/progress from the work folder (to commit) and stop. */
    pack: { type: 'boolean', default: false },
  },
});
const RECIPE = resolve(args.recipe!);

type Flags = Record<string, string | number | boolean | string[]>;
interface Plan {
  /** The work folder's name under ~/.cache/nuri. */
  work: string;
  /** Where the model goes, relative to the repository; default WORK/model. */
  output?: string;
  images: string;
  resolution: number;
  vae: Flags;
  clip: Flags;
  unet: Flags;
  /**
   * Another recipe's progress folder (relative to the repository) whose finished VAE, latents and
   * CLIP stages this recipe starts from, when its own work folder and progress are empty.
   */
  stagesFrom?: string;
  /** A trained UNet's weights (.safetensors, relative to the repository) the UNet starts from instead of fresh weights. */
  unetFrom?: string;
  /** Identity figure at every `every` UNet steps, over `names` training and held-out names. */
  identity?: { every: number; names: number };
  /** The model's own sampling defaults (its nuri.json). */
  defaults?: ModelDefaults;
}
const plan = JSON.parse(readFileSync(resolve(args.plan ?? join(RECIPE, 'training.json')), 'utf8')) as Plan;
const WORK = resolve(args.work ?? process.env.NURI_TRAIN_DIR ?? join(homedir(), '.cache', 'nuri', plan.work));
const OUT = resolve(args.out ?? (plan.output ? join(REPO, plan.output) : join(WORK, 'model')));
const TOKENIZER = resolve(args.tokenizer!);

// ─── bookkeeping: stage markers and the wall time spent in each stage, over every attempt ─────────

const STAGES = join(WORK, 'stages');
const COSTS = join(WORK, 'costs.json');
const marker = (stage: string) => join(STAGES, `${stage}.json`);

function readCosts(): Record<string, number> {
  return existsSync(COSTS) ? (JSON.parse(readFileSync(COSTS, 'utf8')) as Record<string, number>) : {};
}

function addCost(stage: string, seconds: number): void {
  const costs = readCosts();
  costs[stage] = (costs[stage] ?? 0) + seconds;
  writeJsonAtomic(COSTS, costs);
}

function writeJsonAtomic(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(`${path}.tmp`, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

function duration(seconds: number): string {
  const s = Math.round(seconds);
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m${String(s % 60).padStart(2, '0')}s`;
}

// ─── running `nuri train …` as a child, stopping it cleanly on SIGTERM ──────────────────────────

let stopping = false;
let child: ReturnType<typeof spawn> | undefined;
// Ctrl-C reaches the child through the process group; SIGTERM (kill) is passed on as the SIGINT
// the training loop checkpoints on. Either way this script waits for the child, then stops.
process.on('SIGINT', () => (stopping = true));
process.on('SIGTERM', () => {
  stopping = true;
  child?.kill('SIGINT');
});

function cliFlags(flags: Flags): string[] {
  return Object.entries(flags).flatMap(([key, value]) => {
    if (value === false) return [];
    if (value === true) return [`--${key}`];
    if (Array.isArray(value)) return value.flatMap((v) => [`--${key}`, v]);
    return [`--${key}`, String(value)];
  });
}

/** Runs node with `argv` as this script's child (stopped with it), failing unless it exits 0. */
function runChild(label: string, argv: string[], shown: string[] = argv): Promise<void> {
  console.error(`\n$ ${shown.join(' ')}`);
  return new Promise((done, fail) => {
    child = spawn(process.execPath, argv, { stdio: 'inherit', cwd: REPO });
    child.on('error', fail);
    child.on('exit', (code, signal) => {
      child = undefined;
      // A child stopped by our Ctrl-C exits 130 (or dies of the signal): the stage check reports it.
      if (code === 0 || (stopping && (code === 130 || signal === 'SIGINT' || signal === 'SIGTERM'))) done();
      else fail(new Error(`${label} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}`));
    });
  });
}

function nuriTrain(kind: string, flags: Flags): Promise<void> {
  const args = ['train', kind, ...cliFlags(flags)];
  return runChild(`nuri train ${kind}`, [join(REPO, 'bin', 'nuri.js'), ...args], ['nuri', ...args]);
}

// ─── the stages ──────────────────────────────────────────────────────────────────────────────

interface Stage {
  name: string;
  /** The stages whose products this one reads. */
  inputs: string[];
  /** Its working folder (checkpoints), discarded when its inputs change. */
  dir?: string;
  /** The file a finished stage leaves; without it the stage did not finish (e.g. it was interrupted). */
  product: string;
  run(): Promise<unknown>;
}

const dirs = { vae: join(WORK, 'vae'), clip: join(WORK, 'clip'), base: join(WORK, 'base'), unet: join(WORK, 'unet'), final: join(WORK, 'final'), identity: join(WORK, 'identity') };
const milestones = join(dirs.unet, 'milestones');

/** The UNet stage, keeping its milestones (checked every half minute and at the end). */
async function trainUNet(): Promise<void> {
  const every = plan.identity?.every;
  const keep = () => every && keepMilestones(join(dirs.unet, 'checkpoints'), every, milestones);
  const keeper = setInterval(keep, 30_000);
  try {
    await nuriTrain('unet', { model: dirs.base, ...common, ...plan.unet, out: dirs.unet });
  } finally {
    clearInterval(keeper);
    keep();
  }
}

/** The identity figure of each milestone not yet measured, then the table of all of them. */
async function measureMilestones(): Promise<unknown> {
  const { names } = plan.identity!;
  mkdirSync(dirs.identity, { recursive: true });
  // Milestones kept here, and those measured on an earlier machine (their figures travel, their checkpoints do not).
  const measured = readdirSync(dirs.identity).flatMap((f) => /^step-(\d+)\.json$/.exec(f)?.[1] ?? []).map(Number);
  const kept = keepMilestones(join(dirs.unet, 'checkpoints'), plan.identity!.every, milestones);
  const steps = [...new Set([...kept, ...measured])].sort((a, b) => a - b);
  const rows: { step: number; train: number; heldout: number }[] = [];
  for (const step of steps) {
    const json = join(dirs.identity, `step-${step}.json`);
    const checkpoint = join(milestones, checkpointName(step));
    // A figure measured after its milestone was kept still holds (a longer run keeps the earlier
    // milestones); one older than its milestone was made by a run that was redone.
    const stale = existsSync(json) && existsSync(checkpoint) && statSync(json).mtimeMs < statSync(checkpoint).mtimeMs;
    if (!existsSync(json) || stale) {
      const ema = existsSync(join(checkpoint, 'ema.safetensors')) ? ['--ema'] : [];
      const argv = ['--import', 'tsx', join(REPO, 'scripts', 'eval-default.ts'), '--model', dirs.base, '--checkpoint', checkpoint, ...ema, '--identity', '--names', String(names), '--json', `${json}.tmp`];
      await runChild('eval-default', argv, ['npx tsx scripts/eval-default.ts', ...argv.slice(3)]);
      renameSync(`${json}.tmp`, json);
    }
    const { identity } = JSON.parse(readFileSync(json, 'utf8')) as { identity: Record<'train' | 'heldout', { rate: number }> };
    rows.push({ step, train: identity.train.rate, heldout: identity.heldout.rate });
  }
  console.error(`\nidentity (own emoji among the 5 nearest real images; ${names} training and ${names} held-out names):`);
  for (const r of rows) console.error(`  step ${String(r.step).padStart(6)}  training ${(100 * r.train).toFixed(1)}%  held-out ${(100 * r.heldout).toFixed(1)}%`);
  writeJsonAtomic(join(dirs.identity, 'summary.json'), rows);
  return rows;
}
const latentsFile = join(WORK, 'latents.json');
const common = { images: plan.images, resolution: plan.resolution, resume: true };

const stages: Stage[] = [
  {
    name: 'vae',
    inputs: [],
    dir: dirs.vae,
    product: join(dirs.vae, 'diffusion_pytorch_model.safetensors'),
    run: () => nuriTrain('vae', { config: join(RECIPE, 'vae.json'), ...common, ...plan.vae, out: dirs.vae }),
  },
  {
    name: 'latents',
    inputs: ['vae'],
    product: latentsFile,
    run: async () => {
      const stats = await measureLatents(dirs.vae, plan.images, plan.resolution);
      writeJsonAtomic(latentsFile, stats);
      return stats;
    },
  },
  {
    name: 'clip',
    inputs: [],
    dir: dirs.clip,
    product: join(dirs.clip, 'text_encoder', 'model.safetensors'),
    run: () => nuriTrain('clip', { config: join(RECIPE, 'clip.json'), tokenizer: TOKENIZER, ...common, ...plan.clip, out: dirs.clip }),
  },
  {
    name: 'base',
    inputs: ['latents', 'clip'],
    product: join(dirs.base, 'model_index.json'),
    run: async () => {
      const { scalingFactor } = JSON.parse(readFileSync(latentsFile, 'utf8')) as { scalingFactor: number };
      writeBasePipeline({ vae: dirs.vae, scalingFactor, clip: dirs.clip, unetConfig: join(RECIPE, 'unet.json'), scheduler: join(RECIPE, 'scheduler_config.json'), out: dirs.base, seed: 0, ...(plan.unetFrom ? { unetFrom: join(REPO, plan.unetFrom) } : {}) });
    },
  },
  {
    name: 'unet',
    inputs: ['base'],
    dir: dirs.unet,
    product: join(dirs.unet, 'unet', 'diffusion_pytorch_model.safetensors'),
    run: trainUNet,
  },
  {
    name: 'assemble',
    inputs: ['unet', 'clip'],
    product: join(OUT, 'model_index.json'),
    run: async () => assembleDefaultModel({ unetPipeline: dirs.unet, clip: dirs.clip, staging: dirs.final, out: OUT, costs: readCosts(), resolution: plan.resolution, defaults: plan.defaults }),
  },
  ...(plan.identity
    ? // No `dir`: a rerun keeps the figures still valid (measureMilestones checks each against its milestone).
      [{ name: 'identity', inputs: ['unet'], product: join(dirs.identity, 'summary.json'), run: measureMilestones }]
    : []),
];

/** When the stage last finished (its marker's time), or undefined. */
function finishedAt(name: string): number | undefined {
  const stage = stages.find((s) => s.name === name)!;
  return existsSync(marker(name)) && existsSync(stage.product) ? statSync(marker(name)).mtimeMs : undefined;
}

const startStamp = (name: string) => join(STAGES, `${name}.started`);

/** Its time so far moves to "<name> (discarded)"; its folder and marker go. */
function discard(stage: Stage): void {
  console.error(`stage ${stage.name}: its inputs were made again since it started; starting it afresh`);
  const costs = readCosts();
  costs[`${stage.name} (discarded)`] = (costs[`${stage.name} (discarded)`] ?? 0) + (costs[stage.name] ?? 0);
  delete costs[stage.name];
  writeJsonAtomic(COSTS, costs);
  if (stage.dir) rmSync(stage.dir, { recursive: true, force: true });
  rmSync(marker(stage.name), { force: true });
  rmSync(startStamp(stage.name), { force: true });
}

async function runStage(stage: Stage): Promise<void> {
  const inputsFinished = Math.max(0, ...stage.inputs.map((name) => finishedAt(name) ?? 0));
  const finished = finishedAt(stage.name);
  if (finished !== undefined && finished >= inputsFinished) {
    console.error(`stage ${stage.name}: done (${marker(stage.name)})`);
    return;
  }
  const began = existsSync(startStamp(stage.name)) ? statSync(startStamp(stage.name)).mtimeMs : undefined;
  if (finished !== undefined || (began !== undefined && began < inputsFinished)) discard(stage);
  if (!existsSync(startStamp(stage.name))) writeJsonAtomic(startStamp(stage.name), { startedAt: new Date().toISOString() });
  console.error(`\n══ stage ${stage.name} ══ (${new Date().toISOString()})`);
  // The time is booked every minute as well as at the end, so a run killed outright (kill -9, the
  // end of a sitting) loses at most a minute of its stage's wall time from the cost table.
  let booked = performance.now();
  const book = () => {
    const now = performance.now();
    addCost(stage.name, (now - booked) / 1000);
    booked = now;
  };
  const ticker = setInterval(book, 60_000);
  let result: unknown;
  try {
    result = await stage.run();
  } finally {
    clearInterval(ticker);
    book();
  }
  if (!existsSync(stage.product)) {
    console.error(`stage ${stage.name} stopped before finishing; run \`npm run train:default\` again to continue from its checkpoint`);
    process.exit(130);
  }
  writeJsonAtomic(marker(stage.name), { finishedAt: new Date().toISOString(), seconds: readCosts()[stage.name], result });
  console.error(`stage ${stage.name} finished: ${duration(readCosts()[stage.name])} wall time over all attempts`);
  if (stopping) {
    console.error(`stopped after stage ${stage.name}; run \`npm run train:default\` again to continue`);
    process.exit(130);
  }
}

// RECIPE/progress carries the run between machines (src/training/carry.ts).
const PROGRESS = join(RECIPE, 'progress');
if (args.pack) {
  console.error(`packed ${WORK} into ${PROGRESS}: ${describeProgress(packProgress(WORK, PROGRESS))}`);
  process.exit(0);
}
const STAGES_FROM = plan.stagesFrom && join(REPO, plan.stagesFrom);
const carried = unpackProgress(PROGRESS, WORK) ?? (STAGES_FROM ? unpackProgress(STAGES_FROM, WORK, { stagesOnly: true }) : undefined);
if (carried) console.error(`carried in from ${existsSync(join(PROGRESS, 'manifest.json')) ? PROGRESS : STAGES_FROM}: ${describeProgress(carried)}`);
mkdirSync(WORK, { recursive: true });
// A UNet started from another recipe's finished one (unetFrom in its progress folder) counts that
// run's UNet time, and what its own UNet started from, so the cost table and the model card give
// the whole training along a chain of recipes.
const startedFrom = plan.unetFrom && join(dirname(dirname(join(REPO, plan.unetFrom))), 'manifest.json');
if (startedFrom && existsSync(startedFrom) && readCosts()[STARTED_FROM_COST] === undefined) {
  const seconds = unetLineageSeconds((JSON.parse(readFileSync(startedFrom, 'utf8')) as { costs?: Record<string, number> }).costs ?? {});
  if (seconds) addCost(STARTED_FROM_COST, seconds);
}
if (!existsSync(join(TOKENIZER, 'vocab.json'))) throw new Error(`no CLIP tokenizer (vocab.json, merges.txt) in ${TOKENIZER}; pass --tokenizer DIR`);
console.error(`train:default: recipe ${RECIPE}, work folder ${WORK}, model → ${OUT}`);
const started = performance.now();
for (const stage of stages) {
  if (stopping) break;
  await runStage(stage);
}

const costs = readCosts();
const total = Object.values(costs).reduce((a, b) => a + b, 0);
console.error('\nwall time per stage (all attempts):');
for (const [name, seconds] of Object.entries(costs)) console.error(`  ${name.padEnd(9)} ${duration(seconds)}`);
console.error(`  ${'total'.padEnd(9)} ${duration(total)}   (this run: ${duration((performance.now() - started) / 1000)})`);
const size = (dir: string): number => readdirSync(dir).reduce((a, n) => a + (statSync(join(dir, n)).isDirectory() ? size(join(dir, n)) : statSync(join(dir, n)).size), 0);
console.error(`model: ${OUT} (${(size(OUT) / 1e6).toFixed(1)} MB)`);
