// The DDPM ε-loss on the tiny fixture UNet against diffusers: noised latents, prediction, loss
// and the recorded parameter gradients (reference case train_unet_epsilon_loss).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Generator, Tensor, compile, grad, readSafetensors } from '../../src/engine/index.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { createScheduler } from '../../src/schedulers/index.ts';
import { diffusionFeeds, diffusionInputs, diffusionLoss, drawNoising, minSnrWeights } from '../../src/training/index.ts';
import { TINY_SD, referenceCase } from '../fixtures.ts';

const ref = readSafetensors(referenceCase('train_unet_epsilon_loss').file);
const value = (name: string) => ref.get(name)!.data as Float32Array;
const schedulerConfig = JSON.parse(readFileSync(join(TINY_SD, 'scheduler', 'scheduler_config.json'), 'utf8'));
const alphasCumprod = createScheduler('ddpm', schedulerConfig).alphasCumprod;

function maxAbs(a: Float32Array): number {
  return a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}
function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
}

describe('diffusionLoss', () => {
  it('matches diffusers: noisy latents, prediction, loss (1e-6 rel) and parameter gradients (1e-4 rel)', async () => {
    const unet = loadUNet(join(TINY_SD, 'unet'));
    const gradNames = [...ref.keys()].filter((k) => k.startsWith('grad.')).map((k) => k.slice(5));
    expect(gradNames.length).toBe(7);
    const byName = new Map(unet.parameters().map((p) => [p.name, p]));
    const params = gradNames.map((n) => byName.get(n)!);

    // Static shapes: ONNX Runtime builds this session ~5× faster than with a symbolic batch.
    const inputs = diffusionInputs(2, [4, 16, 16]);
    const context = Tensor.input('encoder_hidden_states', [2, 77, 32]);
    const out = diffusionLoss(unet, inputs, context, 'epsilon');
    // One graph for loss, gradients and the intermediate tensors (a second compile costs seconds).
    const grads = grad(out.loss, params.map((p) => p.tensor));
    const graph = await compile({
      inputs: [...Object.values(inputs), context],
      outputs: { loss: out.loss, noisy: out.noisyLatents, pred: out.prediction, ...Object.fromEntries(grads.map((g, i) => [`g${i}`, g])) },
      trainable: params,
    });
    const timesteps = [...(ref.get('timesteps')!.data as BigInt64Array)].map(Number);
    const feeds = {
      ...diffusionFeeds(alphasCumprod, value('latents'), [2, 4, 16, 16], value('noise'), timesteps),
      encoder_hidden_states: { data: value('encoder_hidden_states'), shape: [2, 77, 32] },
    };
    const result = await graph.run(feeds);

    const loss = (result.loss.data as Float32Array)[0];
    const lossRel = Math.abs(loss - value('loss')[0]) / value('loss')[0];
    expect(lossRel).toBeLessThan(1e-6);
    const report: string[] = [`loss rel ${lossRel.toExponential(2)}`];
    params.forEach((p, i) => {
      const expected = value(`grad.${p.name}`);
      const diff = maxAbsDiff(result[`g${i}`].data as Float32Array, expected);
      const rel = diff / maxAbs(expected);
      report.push(`${p.name} rel ${rel.toExponential(2)} abs ${diff.toExponential(2)}`);
      // up_blocks.3.attentions.2.proj_out.bias feeds conv_norm_out, a GroupNorm with one channel per
      // group, which cancels any per-channel constant: its true gradient is 0 and both sides hold
      // float noise (~1e-9), so it is compared absolutely.
      if (maxAbs(expected) < 1e-7) expect(diff, p.name).toBeLessThan(1e-8);
      else expect(rel, p.name).toBeLessThan(1e-4);
    });
    if (process.env.NURI_REPORT) console.log(report.join('\n'));

    expect(maxAbsDiff(result.noisy.data as Float32Array, value('noisy_latents'))).toBeLessThan(1e-6);
    expect(maxAbsDiff(result.pred.data as Float32Array, value('model_pred'))).toBeLessThan(1e-4);
  });

  it('v-prediction regresses on √ᾱ·ε − √(1−ᾱ)·x₀; draws are integer timesteps in [0, 1000) from the generator', async () => {
    const unet = loadUNet(join(TINY_SD, 'unet'));
    const inputs = diffusionInputs(1, [4, 8, 8]);
    const context = Tensor.input('encoder_hidden_states', [1, 77, 32]);
    const out = diffusionLoss(unet, inputs, context, 'v_prediction');
    const graph = await compile({ inputs: [...Object.values(inputs), context], outputs: { target: out.target } });
    const rng = new Generator(5);
    const x0 = rng.randn(256);
    const { timesteps, noise } = drawNoising(rng, 1, 256, 1000);
    expect(Number.isInteger(timesteps[0]) && timesteps[0] >= 0 && timesteps[0] < 1000).toBe(true);
    const r = await graph.run({ ...diffusionFeeds(alphasCumprod, x0, [1, 4, 8, 8], noise, timesteps), encoder_hidden_states: new Float32Array(77 * 32) });
    const a = alphasCumprod[timesteps[0]];
    const expected = x0.map((x, i) => Math.sqrt(a) * noise[i] - Math.sqrt(1 - a) * x);
    expect(maxAbsDiff(r.target.data as Float32Array, expected)).toBeLessThan(1e-5);
    const draws = drawNoising(new Generator(1), 4000, 0, 1000).timesteps;
    expect(Math.min(...draws)).toBe(0);
    expect(Math.max(...draws)).toBe(999);
  });

  it('min-SNR-γ: weights min(SNR, γ)/SNR for ε and min(SNR, γ)/(SNR+1) for v; the loss is the weighted mean of per-item errors', async () => {
    const t = [0, 200, 500, 999];
    const eps = minSnrWeights(alphasCumprod, t, 5);
    const v = minSnrWeights(alphasCumprod, t, 5, 'v_prediction');
    t.forEach((step, i) => {
      const snr = alphasCumprod[step] / (1 - alphasCumprod[step]);
      expect(eps[i]).toBeCloseTo(Math.min(snr, 5) / snr, 6);
      expect(v[i]).toBeCloseTo(Math.min(snr, 5) / (snr + 1), 6);
    });
    // Nearly clean timesteps (SNR ≫ γ) are damped; noisy ones (SNR < γ) keep weight 1 under ε.
    expect(eps[0]).toBeLessThan(0.01);
    expect(eps[3]).toBe(1);
    expect(() => minSnrWeights(alphasCumprod, [1000], 5)).toThrow(/timestep 1000/);
    expect(() => minSnrWeights(alphasCumprod, [1], 0)).toThrow(/gamma/);

    const unet = loadUNet(join(TINY_SD, 'unet'));
    const inputs = diffusionInputs(2, [4, 8, 8]);
    const context = Tensor.input('encoder_hidden_states', [2, 77, 32]);
    const weight = Tensor.input('loss_weight', [2]);
    const plain = diffusionLoss(unet, inputs, context, 'epsilon');
    const weighted = diffusionLoss(unet, inputs, context, 'epsilon', {}, weight);
    const graph = await compile({ inputs: [...Object.values(inputs), context, weight], outputs: { loss: weighted.loss, plain: plain.loss, pred: plain.prediction } });
    const rng = new Generator(3);
    const x0 = rng.randn(512);
    const { noise } = drawNoising(rng, 2, 256, 1000);
    const feeds = (w: number[]) => ({
      ...diffusionFeeds(alphasCumprod, x0, [2, 4, 8, 8], noise, [100, 700]),
      encoder_hidden_states: rng.randn(2 * 77 * 32).fill(0.1),
      loss_weight: { data: Float32Array.from(w), shape: [2] },
    });
    const r = await graph.run(feeds([0.25, 2]));
    const pred = r.pred.data as Float32Array;
    const itemError = (b: number) => pred.slice(b * 256, (b + 1) * 256).reduce((a, p, i) => a + (p - noise[b * 256 + i]) ** 2, 0) / 256;
    const expected = (0.25 * itemError(0) + 2 * itemError(1)) / 2;
    expect(Math.abs((r.loss.data as Float32Array)[0] - expected) / expected).toBeLessThan(1e-5);
    const ones = await graph.run(feeds([1, 1]));
    expect((ones.loss.data as Float32Array)[0]).toBeCloseTo((ones.plain.data as Float32Array)[0], 6);
  });
});
