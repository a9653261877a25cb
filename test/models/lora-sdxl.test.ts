// LoRA files for SDXL: kohya's names (lora_unet_ with the original UNet's module paths, lora_te1_,
// lora_te2_) and diffusers' (unet., text_encoder., text_encoder_2.) reach the right layers of tiny-sdxl.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type WritableTensor, writeSafetensors } from '../../src/engine/safetensors.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { loadLoraFile, mergeLora } from '../../src/models/lora.ts';
import { TINY_SDXL } from '../fixtures.ts';

const tmp = mkdtempSync(join(tmpdir(), 'nuri-lora-sdxl-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const RANK = 2;
function pair(inFeatures: number, outFeatures: number, seed: number) {
  const down = Float32Array.from({ length: RANK * inFeatures }, (_, i) => Math.sin(seed + i));
  const up = Float32Array.from({ length: outFeatures * RANK }, (_, i) => Math.cos(seed * 3 + i));
  return { down, up };
}

// tiny-sdxl: level 1's first attention is input_blocks.4.1 in the original numbering (1 + 3·1 + 0);
// up block 0's upsampler sits after its attention in output_blocks.2.2.
const LAYERS = [
  { kohya: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q', diffusers: 'unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q', component: 'unet', module: 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q', shape: [32, 32] },
  { kohya: 'lora_unet_output_blocks_2_2_conv', diffusers: 'unet.up_blocks.0.upsamplers.0.conv', component: 'unet', module: 'up_blocks.0.upsamplers.0.conv', shape: [32, 32 * 9] },
  { kohya: 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj', diffusers: 'text_encoder.text_model.encoder.layers.0.self_attn.q_proj', component: 'text_encoder', module: 'text_model.encoder.layers.0.self_attn.q_proj', shape: [4, 4] },
  { kohya: 'lora_te2_text_model_encoder_layers_4_mlp_fc1', diffusers: 'text_encoder_2.text_model.encoder.layers.4.mlp.fc1', component: 'text_encoder_2', module: 'text_model.encoder.layers.4.mlp.fc1', shape: [29, 8] },
] as const;

function write(style: 'kohya' | 'diffusers'): string {
  const tensors = new Map<string, WritableTensor>();
  LAYERS.forEach((l, i) => {
    const [out, inner] = l.shape;
    const { down, up } = pair(inner, out, i + 1);
    if (style === 'kohya') {
      tensors.set(`${l.kohya}.lora_down.weight`, { dtype: 'F32', shape: [RANK, inner], data: down });
      tensors.set(`${l.kohya}.lora_up.weight`, { dtype: 'F32', shape: [out, RANK], data: up });
      tensors.set(`${l.kohya}.alpha`, { dtype: 'F32', shape: [], data: Float32Array.of(1) });
    } else {
      tensors.set(`${l.diffusers}.lora_A.weight`, { dtype: 'F32', shape: [RANK, inner], data: down });
      tensors.set(`${l.diffusers}.lora_B.weight`, { dtype: 'F32', shape: [out, RANK], data: up });
    }
  });
  const path = join(tmp, `${style}.safetensors`);
  writeSafetensors(path, tensors);
  return path;
}

describe('SDXL LoRA key names', () => {
  for (const style of ['kohya', 'diffusers'] as const) {
    it(`${style}: every layer is found in its component and merged as W + (alpha/rank)·B·A`, async () => {
      const components = loadStableDiffusion(TINY_SDXL);
      const read = loadLoraFile(write(style), components);
      expect(read.unmatched).toEqual([]);
      expect(read.layers.map((l) => `${l.component}:${l.module}`).sort()).toEqual(LAYERS.map((l) => `${l.component}:${l.module}`).sort());
      const models = { unet: components.unet, text_encoder: components.textEncoder, text_encoder_2: components.textEncoder2! };
      const param = (l: (typeof LAYERS)[number]) => models[l.component].parameters().find((p) => p.name === `${l.module}.weight`)!;
      const before = LAYERS.map((l) => param(l).value().slice());
      await mergeLora(components, read.layers);
      LAYERS.forEach((l, i) => {
        const [out, inner] = l.shape;
        const { down, up } = pair(inner, out, i + 1);
        const scale = style === 'kohya' ? 1 / RANK : 1; // kohya's alpha 1; diffusers without alpha: scale 1
        const after = param(l).value();
        for (const [r, c] of [[0, 0], [out - 1, inner - 1], [1, 2]]) {
          let delta = 0;
          for (let k = 0; k < RANK; k++) delta += up[r! * RANK + k]! * down[k * inner + c!]!;
          expect(after[r! * inner + c!]! - before[i]![r! * inner + c!]!).toBeCloseTo(scale * delta, 4);
        }
      });
    });
  }
});
