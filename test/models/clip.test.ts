import { describe, expect, it } from 'vitest';
import { Generator, Tensor, compile, grad } from '../../src/engine/index.ts';
import { ClipModel, clipContrastiveLoss } from '../../src/models/clip.ts';
import { parseClipConfig } from '../../src/models/checkpoint/clip-config.ts';

const N = 3;
const L = 8;

function freshModel(): ClipModel {
  const model = new ClipModel(
    parseClipConfig({
      projection_dim: 8,
      text_config: { hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, vocab_size: 50, max_position_embeddings: L, eos_token_id: 49 },
      vision_config: { hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, image_size: 16, patch_size: 8 },
    }),
  );
  model.init(new Generator(11));
  return model;
}

/** [N, L] ids: BOS-like 0, a few tokens, EOS 49, padding 49. */
function tokenIds(): BigInt64Array {
  const ids = new BigInt64Array(N * L).fill(49n);
  const rng = new Generator(4);
  for (let n = 0; n < N; n++) {
    ids[n * L] = 0n;
    for (let l = 1; l <= 2 + n; l++) ids[n * L + l] = BigInt(1 + rng.randint(40));
  }
  return ids;
}

describe('ClipModel', () => {
  it('has CLIPModel parameter names with projections and logit_scale', () => {
    const names = freshModel().parameters().map((p) => p.name);
    expect(names).toEqual(expect.arrayContaining(['text_model.embeddings.token_embedding.weight', 'text_projection.weight', 'vision_model.embeddings.class_embedding', 'visual_projection.weight', 'logit_scale']));
    expect(freshModel().logitScale.value()[0]).toBeCloseTo(2.6592, 6);
  });

  it('computes scaled cosine logits and a contrastive loss with gradients to every part', async () => {
    const model = freshModel();
    const trained = [model.logitScale, model.text.textProjection!.weight, model.vision.visualProjection!.weight, model.vision.embeddings.classEmbedding, model.text.embeddings.tokenEmbedding.weight];
    const ids = Tensor.input('input_ids', [N, L], 'int64');
    const pixels = Tensor.input('pixel_values', [N, 3, 16, 16]);
    const out = model.forward(ids, pixels);
    const loss = clipContrastiveLoss(out.logitsPerText);
    const outputs: Record<string, Tensor> = { loss, logits: out.logitsPerText, logitsPerImage: out.logitsPerImage };
    grad(loss, trained.map((p) => p.tensor)).forEach((g, i) => (outputs[`g${i}`] = g));
    const graph = await compile({ inputs: [ids, pixels], outputs, trainable: trained });
    const result = await graph.run({ input_ids: { data: tokenIds(), shape: [N, L] }, pixel_values: { data: new Generator(2).randn(N * 3 * 16 * 16), shape: [N, 3, 16, 16] } });

    const logits = result.logits.data as Float32Array;
    const transposed = result.logitsPerImage.data as Float32Array;
    const scale = Math.exp(2.6592);
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < N; j++) {
        expect(Math.abs(logits[i * N + j])).toBeLessThanOrEqual(scale * (1 + 1e-5));
        expect(transposed[j * N + i]).toBe(logits[i * N + j]);
      }
    }
    // The loss is the mean of row-wise and column-wise cross-entropy with the diagonal as target.
    const ce = (at: (i: number, j: number) => number) => {
      let total = 0;
      for (let i = 0; i < N; i++) {
        let m = -Infinity;
        for (let j = 0; j < N; j++) m = Math.max(m, at(i, j));
        let z = 0;
        for (let j = 0; j < N; j++) z += Math.exp(at(i, j) - m);
        total += m + Math.log(z) - at(i, i);
      }
      return total / N;
    };
    const expected = (ce((i, j) => logits[i * N + j]) + ce((i, j) => logits[j * N + i])) / 2;
    expect((result.loss.data as Float32Array)[0]).toBeCloseTo(expected, 4);

    trained.forEach((p, i) => {
      expect(result[`g${i}`].shape).toEqual(p.shape);
      expect((result[`g${i}`].data as Float32Array).some((v) => Math.abs(v) > 1e-8), p.name).toBe(true);
    });
  });

  it('needs a fixed square batch for the loss', () => {
    expect(() => clipContrastiveLoss(Tensor.input('x', [2, 3]))).toThrow(/square/);
  });
});
