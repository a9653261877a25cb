// TAESD decode against the full SD VAE decode, full-size models with random weights (timings do not
// depend on the values): SD-1.5's AutoencoderKL (bench/random-checkpoint.ts's config, 84M
// parameters) and TAESD (64 channels, blocks 1,3,3,3 / 3,3,3,1, ~2.4M parameters), one picture.
//
//   npm run bench:taesd [-- --size 512 --runs 3] [--result]
//
// `npm run bench:sd -- --taesd` runs this file with --result (one `@@result {json}` line, in a
// process of its own) for its rows.

import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Generator } from '../src/engine/index.ts';
import { AutoencoderTiny } from '../src/models/autoencoder-tiny.ts';
import { parseAutoencoderTinyConfig } from '../src/models/checkpoint/autoencoder-tiny-config.ts';
import { parseVaeConfig } from '../src/models/checkpoint/vae-config.ts';
import { TinyVaeRunner } from '../src/models/tiny-vae-runner.ts';
import { type Shape4, VaeRunner } from '../src/models/vae-runner.ts';
import { AutoencoderKL } from '../src/models/vae.ts';
import { SD15_VAE_CONFIG, TAESD_CONFIG } from './random-checkpoint.ts';
import { median, printResult, seconds } from './sd-report.ts';

export interface DecodeTiming {
  /** Seconds to trace, emit and open the decoder session. */
  sessionS: number;
  /** The first decode (ORT's own warm-up), then the median of the rest, wall and CPU seconds. */
  firstS: number;
  medianS: number;
  medianCpuS: number;
  parameters: number;
}

export interface TaesdComparison {
  size: number;
  taesd: DecodeTiming;
  vae: DecodeTiming;
}

async function timeDecoder(runner: VaeRunner | TinyVaeRunner, parameters: number, latents: Float32Array, shape: Shape4, runs: number): Promise<DecodeTiming> {
  const [, sessionS] = await seconds(() => runner.compiledDecoder());
  const [, firstS] = await seconds(() => runner.decodeLatents(latents, shape));
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < runs; i++) {
    const [, s, c] = await seconds(() => runner.decodeLatents(latents, shape));
    wall.push(s);
    cpu.push(c);
  }
  await runner.release();
  return { sessionS, firstS, medianS: median(wall), medianCpuS: median(cpu), parameters };
}

/** Decodes one size×size picture with each decoder: a cold run, then `runs` timed ones. */
export async function measureTaesdDecode(size = 512, runs = 3): Promise<TaesdComparison> {
  const shape: Shape4 = [1, 4, size / 8, size / 8];
  const latents = new Generator(7).randn(shape.reduce((a, b) => a * b, 1));
  const count = (m: { parameters(): { size: number }[] }) => m.parameters().reduce((n, p) => n + p.size, 0);

  const tiny = new AutoencoderTiny(parseAutoencoderTinyConfig(TAESD_CONFIG));
  tiny.init(new Generator(1));
  const taesd = await timeDecoder(new TinyVaeRunner(tiny), count(tiny), latents, shape, runs);

  const kl = new AutoencoderKL(parseVaeConfig(SD15_VAE_CONFIG));
  kl.init(new Generator(2));
  const vae = await timeDecoder(new VaeRunner(kl), count(kl), latents, shape, runs);
  return { size, taesd, vae };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name: string, fallback: number) => {
    const i = process.argv.indexOf(name);
    return i < 0 ? fallback : Number(process.argv[i + 1]);
  };
  const r = await measureTaesdDecode(arg('--size', 512), arg('--runs', 3));
  if (process.argv.includes('--result')) printResult(r);
  else printTable(r);
}

function printTable(r: TaesdComparison): void {
  const row = (name: string, t: DecodeTiming) =>
    `| ${name} | ${(t.parameters / 1e6).toFixed(1)}M | ${t.sessionS.toFixed(1)} | ${t.firstS.toFixed(2)} | ${t.medianS.toFixed(2)} | ${t.medianCpuS.toFixed(2)} |`;
  console.log(`decode of one ${r.size}² picture (latents [1, 4, ${r.size / 8}, ${r.size / 8}])`);
  console.log('| decoder | parameters | session (s) | first decode (s) | median decode (s) | median CPU (s) |');
  console.log('|---|---|---|---|---|---|');
  console.log(row('TAESD', r.taesd));
  console.log(row('SD VAE (AutoencoderKL)', r.vae));
  console.log(`TAESD decodes ${(r.vae.medianS / r.taesd.medianS).toFixed(1)}× faster (wall), ${(r.vae.medianCpuS / r.taesd.medianCpuS).toFixed(1)}× less CPU`);
}
