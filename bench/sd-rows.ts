// The optional row groups of `npm run bench:sd`, each measured in child processes of its own:
// the SDXL UNet step (--sdxl), TAESD against the full VAE decode (--taesd), and whole pictures
// prompt to PNG through the real `nuri generate` (--picture).

import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WeightDType } from '../src/engine/index.ts';
import { loadUNet } from '../src/models/checkpoint/components.ts';
import { readF32, relativeError } from './compare.ts';
import { taesdComparisonFlops, unetStepFlops } from './sd-flops.ts';
import type { PictureResult } from './sd-picture.ts';
import { type RateRow, gb, optimisedGraphsBuilt, runChild, s, table } from './sd-report.ts';
import type { UNetStepResult } from './sdxl-measure.ts';
import type { TaesdComparison } from './taesd.bench.ts';

const here = dirname(fileURLToPath(import.meta.url));

/** Rows for the rate table (FLOPs against the peak) and lines printed after it. */
export interface Rows {
  rates: RateRow[];
  lines: string[];
}

/** The SDXL UNet step with guidance at each size and dtype; q8 also as its relative error against fp32. */
export async function sdxlRows(unetDir: string, sizes: readonly number[], dtypes: readonly WeightDType[], steps: number, outputs: string): Promise<Rows> {
  const unet = loadUNet(unetDir);
  const rows: Rows = { rates: [], lines: [] };
  for (const size of sizes) {
    const flops = unetStepFlops(unet, size, [77, unet.config.cross_attention_dim[0]]);
    for (const dtype of dtypes) {
      process.stderr.write(`measuring the SDXL UNet at ${size}² ${dtype} in a child process…\n`);
      const prefix = join(outputs, `sdxl-${size}-${dtype}`);
      const args = ['--unet', unetDir, '--size', String(size), '--dtype', dtype, '--steps', String(steps), '--save-outputs', prefix];
      const { result: r } = await runChild<UNetStepResult>(join(here, 'sdxl-measure.ts'), args);
      rows.rates.push({ dtype, stage: 'SDXL UNet step, batch 2', size, flops, wallS: r.unetStepS, cpuS: r.unetStepCpuS });
      const reference = join(outputs, `sdxl-${size}-fp32.unet.f32`);
      const error = dtype !== 'fp32' && dtypes.includes('fp32') ? `; relative error (L2) of its noise prediction vs fp32 ${relativeError(readF32(`${prefix}.unet.f32`), readF32(reference)).toExponential(2)}` : '';
      rows.lines.push(`SDXL UNet at ${size}² ${dtype}: load ${s(r.loadS)}, session ${s(r.sessionS)}, warm-up step ${s(r.unetFirstStepS)}, ` +
        `timed steps ${r.unetStepsS.map((x) => s(x)).join(', ')}; peak RSS ${gb(r.peakRssBytes)}${error}`);
    }
  }
  return rows;
}

/** TAESD's decode against SD-1.5's AutoencoderKL's, one picture at `size`² (bench/taesd.bench.ts). */
export async function taesdRows(size: number, runs: number): Promise<Rows> {
  process.stderr.write(`measuring TAESD and the SD VAE decoding at ${size}² in a child process…\n`);
  const { result: r } = await runChild<TaesdComparison>(join(here, 'taesd.bench.ts'), ['--size', String(size), '--runs', String(runs), '--result']);
  const flops = taesdComparisonFlops(size);
  const bounded = true; // both decoders run in fp32 whatever --dtype says
  return {
    rates: [
      { dtype: 'fp32', stage: 'TAESD decode, 1 image', size, flops: flops.taesd, wallS: r.taesd.medianS, cpuS: r.taesd.medianCpuS, bounded },
      { dtype: 'fp32', stage: 'VAE decode beside it', size, flops: flops.vae, wallS: r.vae.medianS, cpuS: r.vae.medianCpuS, bounded },
    ],
    lines: [
      `TAESD vs the SD VAE at ${size}²: decode ${s(r.taesd.medianS)} vs ${s(r.vae.medianS)} (${(r.vae.medianS / r.taesd.medianS).toFixed(1)}× faster, ` +
        `${(r.vae.medianCpuS / r.taesd.medianCpuS).toFixed(1)}× less CPU time); ${(r.taesd.parameters / 1e6).toFixed(1)}M vs ${(r.vae.parameters / 1e6).toFixed(1)}M parameters; ` +
        `session ${s(r.taesd.sessionS)} vs ${s(r.vae.sessionS)}, first decode ${s(r.taesd.firstS)} vs ${s(r.vae.firstS)} (${runs} timed runs each)`,
    ],
  };
}

/** The pictures `--picture` knows: the issue's 20 guided DDIM steps, and 4 LCM steps without guidance decoded by TAESD. */
export const PICTURES = {
  ddim: { label: 'DDIM 20 steps, guidance 7.5, VAE', args: (_taesd: string) => ['--scheduler', 'ddim', '--steps', '20', '--guidance', '7.5'] },
  lcm: { label: 'LCM 4 steps, guidance 1, TAESD', args: (taesd: string) => ['--scheduler', 'lcm', '--steps', '4', '--guidance', '1', '--vae', taesd] },
};
export type PictureKind = keyof typeof PICTURES;
export type CacheState = 'cold' | 'warm';

export interface PictureOptions {
  model: string;
  taesd: string;
  kinds: readonly PictureKind[];
  dtypes: readonly WeightDType[];
  /** cold: on an empty graph cache (the first run on a model); warm: on the cache a run left. */
  runs: readonly CacheState[];
  size: number;
  outputs: string;
}

const PROMPT = 'a photograph of an astronaut riding a horse on the moon, highly detailed';

/**
 * Each picture prompt → PNG by `nuri generate` in a process of its own (bench/sd-picture.ts), on an
 * empty graph cache and then on the cache that run left. A warm run without a cold one first warms
 * the cache with a 1-step run it does not report.
 */
export async function pictureRows(o: PictureOptions): Promise<string[]> {
  const rows = [['picture', 'dtype', 'cache', 'prompt → PNG', 'load', 'text enc.', 'UNet steps', 'UNet total', 'decode', 'PNG + exit', 'CPU', 'peak RSS']];
  for (const kind of o.kinds) {
    for (const dtype of o.dtypes) {
      const cache = join(o.outputs, `picture-cache-${kind}-${dtype}`);
      rmSync(cache, { recursive: true, force: true });
      const env = { ...process.env, NURI_CACHE: cache };
      const args = (run: string, extra: string[]) => [
        'generate', '--model', o.model, '--prompt', PROMPT, '--width', String(o.size), '--height', String(o.size), '--seed', '0', '--dtype', dtype,
        ...PICTURES[kind].args(o.taesd), ...extra, '--out', join(o.outputs, `picture-${kind}-${dtype}-${run}.png`),
      ];
      try {
        if (!o.runs.includes('cold')) {
          process.stderr.write(`warming the graph cache for ${kind} ${dtype} (1 step, not reported)…\n`);
          await runChild(join(here, 'sd-picture.ts'), args('warm-up', ['--steps', '1']), env);
          await optimisedGraphsBuilt(cache);
        }
        for (const run of (['cold', 'warm'] as const).filter((r) => o.runs.includes(r))) {
          process.stderr.write(`picture ${kind} ${dtype} at ${o.size}², ${run} graph cache, in a child process…\n`);
          const { result: r, wallS } = await runChild<PictureResult>(join(here, 'sd-picture.ts'), args(run, []), env);
          if (!existsSync(join(o.outputs, `picture-${kind}-${dtype}-${run}.png`))) throw new Error(`picture ${kind} ${dtype}: no PNG written`);
          // The process's own start (before its clock began) and exit count as loading.
          const load = r.loadS + (wallS - r.totalS);
          rows.push([PICTURES[kind].label, dtype, run, s(wallS), s(load), s(r.runS['text encoder']), `${r.unetStepsS.length} × ${s(r.unetStepS)}`, s(r.runS.UNet),
            s(r.runS['VAE decoder']), s(r.afterLastRunS), s(r.cpuS), gb(r.peakRssBytes)]);
          // A cold run leaves its optimised graphs to a child after it exits: the warm run waits for them.
          if (run === 'cold') await optimisedGraphsBuilt(cache);
        }
      } finally {
        rmSync(cache, { recursive: true, force: true });
      }
    }
  }
  return [
    `pictures at ${o.size}², prompt → PNG by \`nuri generate\` (one process each, seed 0): load = module loading, configs, tracing and`,
    '  graph emission, session creation (on a cold cache: ONNX Runtime\'s optimisation; a child writes it to the cache after the run) — all but the model runs and the PNG;',
    '  UNet steps: how many × the median run; UNet total: their sum. CPU: the whole process\'s CPU time (all threads).',
    table(rows),
  ];
}
