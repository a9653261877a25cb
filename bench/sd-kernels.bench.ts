// Experiment: fused ONNX Runtime kernels (com.microsoft MultiHeadAttention, GroupNormalization-21)
// against the same maths in plain ops, at the sizes SD-1.5 meets at 512×512: self-attention over
// 64×64 = 4096 tokens, and group norms of the UNet's and the VAE's largest activations. Each case
// and form runs in its own child process, so each peak RSS is that case's alone.
//
//   npx tsx bench/sd-kernels.bench.ts [--runs 3] [--cases a,b]

import { spawn } from 'node:child_process';
import os from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Generator, Parameter, Tensor, type TensorValue, attention, compile, fusedKernels, groupNorm } from '../src/engine/index.ts';

interface Case {
  kernel: 'attention' | 'groupNorm';
  /** Builds the graph's output from its inputs; returns inputs and feeds. */
  build: () => { inputs: Tensor[]; output: Tensor; feeds: Record<string, TensorValue> };
}

function input(name: string, shape: number[], seed: number): [Tensor, TensorValue] {
  return [Tensor.input(name, shape), { data: new Generator(seed).randn(shape.reduce((a, b) => a * b, 1)), shape }];
}

function selfAttention(batch: number, tokens: number, channels: number, heads: number): Case['build'] {
  return () => {
    const [q, qv] = input('q', [batch, tokens, channels], 1);
    const [k, kv] = input('k', [batch, tokens, channels], 2);
    const [v, vv] = input('v', [batch, tokens, channels], 3);
    return { inputs: [q, k, v], output: attention(q, k, v, heads), feeds: { q: qv, k: kv, v: vv } };
  };
}

function groupNorm32(shape: number[], eps: number): Case['build'] {
  return () => {
    const [x, xv] = input('x', shape, 4);
    const weight = new Parameter('weight', [shape[1]]);
    const bias = new Parameter('bias', [shape[1]]);
    weight.setValue(new Float32Array(shape[1]).fill(1));
    bias.setValue(new Float32Array(shape[1]));
    return { inputs: [x], output: groupNorm(x, 32, weight.tensor, bias.tensor, eps), feeds: { x: xv } };
  };
}

const CASES: Record<string, Case> = {
  'unet-self-attention-64x64': { kernel: 'attention', build: selfAttention(2, 4096, 320, 8) },
  'unet-self-attention-32x32': { kernel: 'attention', build: selfAttention(2, 1024, 640, 8) },
  'vae-attention-64x64': { kernel: 'attention', build: selfAttention(1, 4096, 512, 1) },
  'unet-groupnorm-2x320x64x64': { kernel: 'groupNorm', build: groupNorm32([2, 320, 64, 64], 1e-5) },
  'vae-groupnorm-1x128x512x512': { kernel: 'groupNorm', build: groupNorm32([1, 128, 512, 512], 1e-6) },
  'vae-groupnorm-1x256x512x512': { kernel: 'groupNorm', build: groupNorm32([1, 256, 512, 512], 1e-6) },
};

interface Result {
  wallS: number;
  cpuS: number;
  peakRss: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function measure(name: string, fused: boolean, runs: number): Promise<Result> {
  const c = CASES[name];
  if (!c) throw new Error(`unknown case ${name}; known: ${Object.keys(CASES).join(', ')}`);
  fusedKernels[c.kernel] = fused;
  const { inputs, output, feeds } = c.build();
  const graph = await compile({ inputs, outputs: { y: output } });
  await graph.run(feeds); // warm-up: the first run allocates
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const before = process.cpuUsage();
    await graph.run(feeds);
    wall.push((performance.now() - t) / 1000);
    const used = process.cpuUsage(before);
    cpu.push((used.user + used.system) / 1e6);
  }
  return { wallS: median(wall), cpuS: median(cpu), peakRss: process.resourceUsage().maxRSS * 1024 };
}

function child(args: string[]): Promise<Result> {
  return new Promise((done, reject) => {
    const p = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    p.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('@@result '));
      if (code !== 0 || !line) reject(new Error(`case ${args.join(' ')} exited with ${code}\n${out}`));
      else done(JSON.parse(line.slice(9)) as Result);
    });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      cases: { type: 'string', default: Object.keys(CASES).join(',') },
      child: { type: 'string' },
      plain: { type: 'boolean', default: false },
    },
  });
  const runs = Number(values.runs);
  if (values.child) {
    process.stdout.write(`@@result ${JSON.stringify(await measure(values.child, !values.plain, runs))}\n`);
    return;
  }
  const load = () => os.loadavg().map((l) => l.toFixed(2)).join(', ');
  console.log(`median of ${runs} runs after a warm-up; ${os.cpus()[0]?.model}, ${os.cpus().length} cores; load average ${load()}`);
  console.log(`${'case'.padEnd(30)}  ${'fused: wall s'.padStart(13)}  ${'CPU s'.padStart(6)}  ${'peak GB'.padStart(7)}  ${'plain: wall s'.padStart(13)}  ${'CPU s'.padStart(6)}  ${'peak GB'.padStart(7)}`);
  for (const name of values.cases.split(',')) {
    const fused = await child(['--child', name, '--runs', values.runs]);
    const plain = await child(['--child', name, '--runs', values.runs, '--plain']);
    const cells = [fused, plain].flatMap((r) => [r.wallS.toFixed(3).padStart(13), r.cpuS.toFixed(2).padStart(6), (r.peakRss / 1e9).toFixed(2).padStart(7)]);
    console.log(`${name.padEnd(30)}  ${cells.join('  ')}`);
  }
  console.log(`load average after: ${load()}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
