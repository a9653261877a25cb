// `nuri generate` on tiny-sd (--steps 2, 64×64) with inputs that once gave a wrong picture with
// exit 0, or an ONNX Runtime dump: each now exits non-zero with one line naming the file (and
// the tensor or field), and writes no PNG.

import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runNuri } from '../support/cli.ts';
import { writeSafetensors } from '../../src/engine/safetensors.ts';
import { copyTinySd, editJson } from '../model-copy.ts';
import { TINY_SD } from '../fixtures.ts';

const LAYER = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q';

function nuri(dir: string, model: string, extra: string[]) {
  const args = ['generate', 'a cat', '--model', model, '--steps', '2', '--width', '64', '--height', '64', '--out', 'x.png', ...extra];
  return runNuri(args, { cwd: dir });
}

function lora(dir: string, rank: number, value = 0.01): string {
  const path = join(dir, `rank${rank}.safetensors`);
  writeSafetensors(path, {
    [`${LAYER}.lora_down.weight`]: { dtype: 'F32', shape: [rank, 32], data: new Float32Array(rank * 32).fill(value) },
    [`${LAYER}.lora_up.weight`]: { dtype: 'F32', shape: [32, rank], data: new Float32Array(32 * rank).fill(value) },
    [`${LAYER}.alpha`]: { dtype: 'F32', shape: [], data: Float32Array.of(rank) },
  });
  return path;
}

function latents(dir: string, shape: number[], value: number): string {
  const path = join(dir, 'z.safetensors');
  writeSafetensors(path, { latents: { dtype: 'F32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(value) } });
  return path;
}

describe('nuri generate refuses inputs that would draw a wrong picture', () => {
  const cases: [string, (dir: string) => { model?: string; args: string[]; names: string; message: RegExp }][] = [
    ['a rank-0 LoRA', (dir) => ({ args: ['--lora', lora(dir, 0)], names: join(dir, 'rank0.safetensors'), message: /rank ≥ 1/ })],
    ['a LoRA at weight 1e308', (dir) => ({ args: ['--lora', `${lora(dir, 2)}:1e308`], names: join(dir, 'rank2.safetensors'), message: /merging at weight 1e\+308 makes unet/ })],
    ['a LoRA holding NaN', (dir) => ({ args: ['--lora', lora(dir, 2, NaN)], names: `${LAYER}.lora_down.weight`, message: /holds NaN/ })],
    ['NaN latents', (dir) => ({ args: ['--latents', latents(dir, [1, 4, 8, 8], NaN)], names: join(dir, 'z.safetensors'), message: /holds NaN/ })],
    ['latents that do not fit --width', (dir) => ({ args: ['--latents', latents(dir, [1, 4, 9, 9], 0.5), '--width', '64'], names: join(dir, 'z.safetensors'), message: /\[1, 4, 9, 9\], which does not fit .*--width 64/ })],
    ['4096×4096', () => ({ args: ['--width', '4096', '--height', '4096'], names: '4096×4096', message: /too large: the attention .* over the limit of/ })],
    ['a UNet norm_eps of −1', () => {
      const model = copyTinySd();
      return { model, args: [], names: editJson(model, 'unet/config.json', (j) => (j.norm_eps = -1)), message: /"norm_eps" must be a number above 0/ };
    }],
    ['a VAE scaling_factor of 1e-300', () => {
      const model = copyTinySd();
      return { model, args: [], names: editJson(model, 'vae/config.json', (j) => (j.scaling_factor = 1e-300)), message: /"scaling_factor" must be a number from 0\.001/ };
    }],
  ];
  for (const [what, make] of cases) {
    it(`refuses ${what}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'nuri-refused-'));
      const { model = TINY_SD, args, names, message } = make(dir);
      const r = await nuri(dir, model, args);
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(names);
      expect(r.stderr).toMatch(message);
      expect(existsSync(join(dir, 'x.png'))).toBe(false);
    });
  }
});
