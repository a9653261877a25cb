// The machine's own arithmetic peak, measured in the same run as the figures it bounds: a 2048³
// fp32 MatMul on ONNX Runtime (MLAS's SGEMM, which keeps both FMA ports busy on packed operands) at
// one and at two intra-op threads, the best of several runs (a peak is a maximum: other processes
// only ever lower it). SGEMM reaches most, not all, of the FMA units' rate, so a stage can come close
// to this figure but never pass it: a stage above it is a measurement error.

import { Generator, Tensor, compile, matmul } from '../src/engine/index.ts';

export interface Peak {
  /** GFLOP/s (2 per multiply–add) by intra-op thread count, best of `runs`. */
  fp32: Record<number, number>;
  /**
   * GFLOP per CPU-second (all threads' user + system time), best of `runs`: the rate of one busy
   * thread, which other processes on the cores barely change (they take wall time, not CPU time).
   */
  fp32PerCpuSecond: Record<number, number>;
  /** Side of the square matrices, and timed runs per figure. */
  n: number;
  runs: number;
}

/** fp32 MatMul rate at each thread count. */
export async function measurePeak(threadCounts: readonly number[] = [1, 2], runs = 5, n = 2048): Promise<Peak> {
  const peak: Peak = { fp32: {}, fp32PerCpuSecond: {}, n, runs };
  const rng = new Generator(0);
  const feeds = { a: { data: rng.randn(n * n), shape: [n, n] }, b: { data: rng.randn(n * n), shape: [n, n] } };
  for (const threads of threadCounts) {
    const a = Tensor.input('a', [n, n]);
    const b = Tensor.input('b', [n, n]);
    const graph = await compile({ inputs: [a, b], outputs: { c: matmul(a, b) } }, { threads });
    await graph.run(feeds); // warm-up: thread pool, packing buffers
    let best = Infinity;
    let bestCpu = Infinity;
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const cpu0 = process.cpuUsage();
      await graph.run(feeds);
      const cpu = process.cpuUsage(cpu0);
      best = Math.min(best, (performance.now() - t0) / 1000);
      bestCpu = Math.min(bestCpu, (cpu.user + cpu.system) / 1e6);
    }
    await graph.release();
    peak.fp32[threads] = (2 * n ** 3) / best / 1e9;
    peak.fp32PerCpuSecond[threads] = (2 * n ** 3) / bestCpu / 1e9;
  }
  return peak;
}
