import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Generator } from '../../src/engine/random.ts';
import { ClipModel } from '../../src/models/clip.ts';
import { parseClipConfig } from '../../src/models/checkpoint/clip-config.ts';
import { hasPipelineClip, loadPipelineClip, writeImageEncoder } from '../../src/models/pipeline-clip.ts';
import { WEIGHTS_FILE, writeComponent } from '../../src/training/export.ts';

const CONFIG = {
  projection_dim: 8,
  text_config: { vocab_size: 50, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 6, eos_token_id: 49 },
  vision_config: { image_size: 8, patch_size: 4, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 },
};

describe('a pipeline carrying its whole CLIP', () => {
  it('splits a CLIPModel into text_encoder/ and image_encoder/ and puts it back together', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-pipeline-clip-'));
    const model = new ClipModel(parseClipConfig(CONFIG));
    model.init(new Generator(1));
    model.logitScale.setValue(Float32Array.of(3.5));
    const params = model.parameters();
    // What `nuri train clip` writes: the CLIPModel, and its text tower alone.
    writeComponent(join(dir, 'clip'), { config: CONFIG, params, weightsFile: WEIGHTS_FILE.transformers });
    writeComponent(join(dir, 'pipe', 'text_encoder'), { config: CONFIG.text_config, params: params.filter((p) => p.name.startsWith('text_model.')), weightsFile: WEIGHTS_FILE.transformers });
    expect(hasPipelineClip(join(dir, 'pipe'))).toBe(false);
    writeImageEncoder(join(dir, 'clip'), join(dir, 'pipe'));
    expect(hasPipelineClip(join(dir, 'pipe'))).toBe(true);

    const back = loadPipelineClip(join(dir, 'pipe'));
    const values = new Map(back.parameters().map((p) => [p.name, p.value()]));
    expect([...values.keys()].sort()).toEqual(params.map((p) => p.name).sort());
    for (const p of params) expect(values.get(p.name)).toEqual(p.value());
  });

  it('says when the image half is missing', () => {
    expect(() => loadPipelineClip(mkdtempSync(join(tmpdir(), 'nuri-pipeline-clip-')))).toThrow(/no image_encoder\/ folder/);
  });
});
