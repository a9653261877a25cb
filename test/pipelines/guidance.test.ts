import { describe, expect, it } from 'vitest';
import { Tensor, compile, grad, sum } from '../../src/engine/index.ts';
import { applyGuidance, guide, guideTensor } from '../../src/pipelines/guidance.ts';

const uncond = Float32Array.of(1, -2, 0.5, 4);
const cond = Float32Array.of(3, -2, -0.5, 0);

describe('classifier-free guidance', () => {
  it('is uncond + g·(cond − uncond): g = 0 gives uncond, g = 1 cond, g > 1 extrapolates past cond', () => {
    expect([...guide(uncond, cond, 0)]).toEqual([...uncond]);
    expect([...guide(uncond, cond, 1)]).toEqual([...cond]);
    expect([...guide(uncond, cond, 7.5)]).toEqual([16, -2, -7, -26]);
  });

  it('applyGuidance reads a batch laid out as [uncond; cond]', () => {
    const batched = new Float32Array(8);
    batched.set(uncond);
    batched.set(cond, 4);
    expect([...applyGuidance(batched, 3)]).toEqual([...guide(uncond, cond, 3)]);
  });

  it('names a size mismatch', () => {
    expect(() => guide(uncond, cond.subarray(1), 2)).toThrow(/unconditional prediction has 4 values, conditional 3/);
  });

  it('as a graph op it gives the same values, and ∂/∂uncond = 1 − g', async () => {
    const u = Tensor.input('uncond', [4]);
    const c = Tensor.input('cond', [4]);
    const g = Tensor.input('guidance', [1]);
    const guided = guideTensor(u, c, g);
    const [dUncond] = grad(sum(guided), [u]);
    const graph = await compile({ inputs: [u, c, g], outputs: { guided, dUncond } });
    const out = await graph.run({ uncond, cond, guidance: Float32Array.of(7.5) });
    expect([...(out.guided.data as Float32Array)]).toEqual([...guide(uncond, cond, 7.5)]);
    expect([...(out.dUncond.data as Float32Array)]).toEqual([-6.5, -6.5, -6.5, -6.5]);
  });
});
