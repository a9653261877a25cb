// The machine's own arithmetic peak, measured in the same run as the figures it bounds: ONNX
// Runtime's two fp32 workhorse kernels on large operands — a 2048³ MatMul (MLAS SGEMM) and a 3×3
// convolution of 256 channels at 64×64 (MLAS's NCHWc direct convolution) — at one and at two
// intra-op threads, the best of several runs of the better kernel (a peak is a maximum: other
// processes only ever lower it). These kernels reach most, not all, of the FMA units' rate, so a
// stage can come close to the figure but not pass it: a stage above it is a measurement error.

import { Generator, Parameter, Tensor, compile, conv2d, matmul } from '../src/engine/index.ts';

export interface Peak {
  /** GFLOP/s (2 per multiply–add) by intra-op thread count, best of `runs` of either kernel. */
  fp32: Record<number, number>;
  /**
   * GFLOP per CPU-second (all threads' user + system time), best of `runs`: the rate of the busy
   * threads, which other processes on the cores change less than wall time (they take turns).
   */
  fp32PerCpuSecond: Record<number, number>;
  /** Which kernel gave each figure, and timed runs per kernel. */
  kernel: Record<number, string>;
  runs: number;
}

interface Kernel {
  name: string;
  flops: number;
  build: () => { inputs: Tensor[]; output: Tensor; feeds: Record<string, { data: Float32Array; shape: number[] }> };
}

const rng = new Generator(0);

const KERNELS: Kernel[] = [
  {
    name: 'MatMul 2048³',
    flops: 2 * 2048 ** 3,
    build: () => {
      const [a, b] = [Tensor.input('a', [2048, 2048]), Tensor.input('b', [2048, 2048])];
      return { inputs: [a, b], output: matmul(a, b), feeds: { a: { data: rng.randn(2048 ** 2), shape: [2048, 2048] }, b: { data: rng.randn(2048 ** 2), shape: [2048, 2048] } } };
    },
  },
  {
    name: 'Conv 3×3 256→256 at 64²',
    flops: 2 * 256 * 256 * 9 * 64 * 64,
    build: () => {
      const x = Tensor.input('x', [1, 256, 64, 64]);
      const w = new Parameter('w', [256, 256, 3, 3]);
      w.setValue(rng.randn(w.size));
      return { inputs: [x], output: conv2d(x, w.tensor, undefined, { padding: 1 }), feeds: { x: { data: rng.randn(256 * 64 * 64), shape: [1, 256, 64, 64] } } };
    },
  },
];

/** The better kernel's best wall and CPU-time rate at each thread count. */
export async function measurePeak(threadCounts: readonly number[] = [1, 2], runs = 8): Promise<Peak> {
  const peak: Peak = { fp32: {}, fp32PerCpuSecond: {}, kernel: {}, runs };
  for (const threads of threadCounts) {
    peak.fp32[threads] = 0;
    peak.fp32PerCpuSecond[threads] = 0;
    for (const kernel of KERNELS) {
      const { inputs, output, feeds } = kernel.build();
      const graph = await compile({ inputs, outputs: { y: output } }, { threads });
      await graph.run(feeds); // warm-up: thread pool, packed weights
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        const cpu0 = process.cpuUsage();
        await graph.run(feeds);
        const cpu = process.cpuUsage(cpu0);
        const rate = kernel.flops / ((performance.now() - t0) / 1000) / 1e9;
        if (rate > peak.fp32[threads]) [peak.fp32[threads], peak.kernel[threads]] = [rate, kernel.name];
        peak.fp32PerCpuSecond[threads] = Math.max(peak.fp32PerCpuSecond[threads], kernel.flops / ((cpu.user + cpu.system) / 1e6) / 1e9);
      }
      await graph.release();
    }
  }
  return peak;
}
