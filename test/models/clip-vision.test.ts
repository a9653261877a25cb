import { describe, expect, it } from 'vitest';
import { Generator, Tensor, compile, grad, mul, sum, sym } from '../../src/engine/index.ts';
import { ClipVisionModel } from '../../src/models/clip-vision.ts';
import { parseClipVisionConfig } from '../../src/models/checkpoint/clip-config.ts';

const config = parseClipVisionConfig({
  architectures: ['CLIPVisionModelWithProjection'],
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  image_size: 32,
  patch_size: 8,
  projection_dim: 8,
});
const PIXELS = 3 * 32 * 32;

function freshModel(): ClipVisionModel {
  const model = new ClipVisionModel(config);
  model.init(new Generator(3));
  return model;
}

describe('ClipVisionModel', () => {
  it('has transformers CLIPVisionModelWithProjection parameter names', () => {
    const names = freshModel().parameters().map((p) => p.name);
    expect(names).toEqual(
      expect.arrayContaining([
        'vision_model.embeddings.class_embedding',
        'vision_model.embeddings.patch_embedding.weight',
        'vision_model.embeddings.position_embedding.weight',
        'vision_model.pre_layrnorm.weight',
        'vision_model.encoder.layers.1.self_attn.q_proj.bias',
        'vision_model.encoder.layers.1.mlp.fc2.weight',
        'vision_model.post_layernorm.bias',
        'visual_projection.weight',
      ]),
    );
    expect(names).not.toContain('vision_model.embeddings.patch_embedding.bias');
    expect(freshModel().embeddings.positionEmbedding.weight.shape).toEqual([17, 16]);
  });

  it('encodes a batch of any size to class-token features and projections', async () => {
    const model = freshModel();
    const pixels = Tensor.input('pixel_values', [sym('B'), 3, 32, 32]);
    const out = model.forward(pixels, { outputHiddenStates: true });
    expect(out.hiddenStates).toHaveLength(3);
    const graph = await compile({ inputs: [pixels], outputs: { last: out.lastHiddenState, pooled: out.pooled, embeds: out.imageEmbeds! } });
    const images = new Generator(5).randn(2 * PIXELS);
    const both = await graph.run({ pixel_values: { data: images, shape: [2, 3, 32, 32] } });
    expect(both.last.shape).toEqual([2, 17, 16]);
    expect(both.pooled.shape).toEqual([2, 16]);
    expect(both.embeds.shape).toEqual([2, 8]);
    const values = both.embeds.data as Float32Array;
    expect(values.every(Number.isFinite)).toBe(true);
    // Images do not see each other: the second image alone gives the second row.
    const second = await graph.run({ pixel_values: { data: images.slice(PIXELS), shape: [1, 3, 32, 32] } });
    const row = second.embeds.data as Float32Array;
    for (let i = 0; i < 8; i++) expect(row[i]).toBeCloseTo(values[8 + i], 5);
    expect(Math.abs(values[0] - values[8])).toBeGreaterThan(1e-6);
  });

  it('rejects pixels of the wrong size', () => {
    expect(() => freshModel().forward(Tensor.input('pixel_values', [1, 3, 64, 64]))).toThrow(/\[B, 3, 32, 32\]/);
  });

  it('passes gradients to the patch convolution, class token and projection', async () => {
    const model = freshModel();
    const trained = [model.embeddings.patchEmbedding.weight, model.embeddings.classEmbedding, model.visualProjection!.weight];
    const pixels = Tensor.input('pixel_values', [2, 3, 32, 32]);
    const target = Tensor.constant(new Generator(9).randn(2 * 8), [2, 8]);
    const loss = sum(mul(model.forward(pixels).imageEmbeds!, target));
    const grads = grad(loss, trained.map((p) => p.tensor));
    const outputs: Record<string, Tensor> = { loss };
    grads.forEach((g, i) => (outputs[`g${i}`] = g));
    const graph = await compile({ inputs: [pixels], outputs, trainable: trained });
    const feed = { pixel_values: { data: new Generator(5).randn(2 * PIXELS), shape: [2, 3, 32, 32] } };
    const result = await graph.run(feed);
    trained.forEach((p, i) => {
      expect(result[`g${i}`].shape).toEqual(p.shape);
      expect((result[`g${i}`].data as Float32Array).some((v) => Math.abs(v) > 1e-8)).toBe(true);
    });
    // One coordinate of the class-token gradient against a central difference.
    const classToken = model.embeddings.classEmbedding;
    const eps = 1e-2;
    const lossAt = async (delta: number) => {
      const shifted = new Float32Array(classToken.value());
      shifted[3] += delta;
      return ((await graph.run({ ...feed, [classToken.name]: shifted })).loss.data as Float32Array)[0];
    };
    const numeric = ((await lossAt(eps)) - (await lossAt(-eps))) / (2 * eps);
    expect(numeric).toBeCloseTo((result.g1.data as Float32Array)[3], 2);
  });
});
