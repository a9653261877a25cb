// Single-file SDXL: the test writes tiny-sdxl as one safetensors file with SDXL's original (SGM)
// key names — model.diffusion_model.* (label_emb for the added embedding), first_stage_model.*,
// conditioner.embedders.0.transformer.* and conditioner.embedders.1.model.* in OpenCLIP's layout
// (fused in_proj, text_projection stored transposed) — then loads it through loadStableDiffusion.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SafetensorsFile, type WritableTensor, readSafetensors, writeSafetensors } from '../../src/engine/safetensors.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import { loadStableDiffusion } from '../../src/models/load.ts';
import { sgmUnetModule } from '../../src/models/single-file-sdxl.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { TINY_SDXL, referenceCase } from '../fixtures.ts';
import { maxAbsDiff } from '../schedulers/reference.ts';

/** tiny-sdxl's UNet parameter name → SGM's, through sgmUnetModule (what kohya SDXL LoRAs name). */
function unetKey(name: string): string {
  const at = name.lastIndexOf('.');
  const module = sgmUnetModule(name.slice(0, at), unet.config);
  if (!module) throw new Error(`test: no SGM name for UNet tensor ${name}`);
  return `${module}${name.slice(at)}`;
}

/** tiny-sdxl's VAE name (4 levels) → LDM's, and whether it is a mid-attention linear stored as a 1×1 conv. */
function vaeKey(name: string): { key: string; conv: boolean } {
  let m: RegExpExecArray | null;
  const attention: Record<string, string> = { group_norm: 'norm', to_q: 'q', to_k: 'k', to_v: 'v', 'to_out.0': 'proj_out' };
  const block = (rest: string) => rest.replace('conv_shortcut', 'nin_shortcut');
  if ((m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(name))) {
    return { key: `${m[1]}.mid.attn_1.${attention[m[2]!]}.${m[3]}`, conv: m[2] !== 'group_norm' && m[3] === 'weight' };
  }
  if ((m = /^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.+)$/.exec(name))) return { key: `${m[1]}.mid.block_${+m[2]! + 1}.${block(m[3]!)}`, conv: false };
  if ((m = /^encoder\.down_blocks\.(\d)\.resnets\.(\d)\.(.+)$/.exec(name))) return { key: `encoder.down.${m[1]}.block.${m[2]}.${block(m[3]!)}`, conv: false };
  if ((m = /^encoder\.down_blocks\.(\d)\.downsamplers\.0\.(.+)$/.exec(name))) return { key: `encoder.down.${m[1]}.downsample.${m[2]}`, conv: false };
  if ((m = /^decoder\.up_blocks\.(\d)\.resnets\.(\d)\.(.+)$/.exec(name))) return { key: `decoder.up.${3 - +m[1]!}.block.${m[2]}.${block(m[3]!)}`, conv: false };
  if ((m = /^decoder\.up_blocks\.(\d)\.upsamplers\.0\.(.+)$/.exec(name))) return { key: `decoder.up.${3 - +m[1]!}.upsample.${m[2]}`, conv: false };
  return { key: name.replace('conv_norm_out', 'norm_out'), conv: false };
}

/** text_encoder_2 (CLIPTextModelWithProjection) → OpenCLIP's names; q/k/v are fused by the caller. */
function openClipKey(name: string): string {
  const fixed: Record<string, string> = {
    'text_model.embeddings.token_embedding.weight': 'token_embedding.weight',
    'text_model.embeddings.position_embedding.weight': 'positional_embedding',
    'text_model.final_layer_norm.weight': 'ln_final.weight',
    'text_model.final_layer_norm.bias': 'ln_final.bias',
  };
  if (fixed[name]) return fixed[name];
  const local: Record<string, string> = { layer_norm1: 'ln_1', layer_norm2: 'ln_2', 'mlp.fc1': 'mlp.c_fc', 'mlp.fc2': 'mlp.c_proj', 'self_attn.out_proj': 'attn.out_proj' };
  const m = /^text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
  if (!m || !local[m[2]!]) throw new Error(`test: no OpenCLIP name for ${name}`);
  return `transformer.resblocks.${m[1]}.${local[m[2]!]}.${m[3]}`;
}

const unet = loadUNet(join(TINY_SDXL, 'unet'));

function writeSingleFile(path: string): void {
  const out = new Map<string, WritableTensor>();
  const part = (dir: string, file = 'diffusion_pytorch_model.safetensors') => readSafetensors(join(TINY_SDXL, dir, file));
  for (const [name, t] of part('unet')) out.set(`model.diffusion_model.${unetKey(name)}`, t as WritableTensor);
  for (const [name, t] of part('vae')) {
    const { key, conv } = vaeKey(name);
    out.set(`first_stage_model.${key}`, { ...(t as WritableTensor), shape: conv ? [...t.shape, 1, 1] : t.shape });
  }
  for (const [name, t] of part('text_encoder', 'model.safetensors')) out.set(`conditioner.embedders.0.transformer.${name}`, t as WritableTensor);
  const te2 = part('text_encoder_2', 'model.safetensors');
  const prefix = 'conditioner.embedders.1.model.';
  for (const [name, t] of te2) {
    if (name.endsWith('position_ids')) continue;
    const qkv = /^text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$/.exec(name);
    if (qkv) {
      if (qkv[2] !== 'q') continue;
      const parts = ['q', 'k', 'v'].map((p) => te2.get(name.replace('q_proj', `${p}_proj`))!);
      const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
      parts.reduce((at, p) => (data.set(p.data as Float32Array, at), at + p.data.length), 0);
      out.set(`${prefix}transformer.resblocks.${qkv[1]}.attn.in_proj_${qkv[3]}`, { dtype: 'F32', shape: [3 * t.shape[0]!, ...t.shape.slice(1)], data });
    } else if (name === 'text_projection.weight') {
      const [proj, width] = t.shape as [number, number];
      const src = t.data as Float32Array;
      const data = new Float32Array(src.length);
      for (let j = 0; j < proj; j++) for (let i = 0; i < width; i++) data[i * proj + j] = src[j * width + i]!;
      out.set(`${prefix}text_projection`, { dtype: 'F32', shape: [width, proj], data });
    } else out.set(prefix + openClipKey(name), t as WritableTensor);
  }
  out.set(`${prefix}logit_scale`, { dtype: 'F32', shape: [], data: Float32Array.of(2.6592) });
  writeSafetensors(path, out);
}

const tmp = mkdtempSync(join(tmpdir(), 'nuri-sdxl-single-'));
const SINGLE = join(tmp, 'tiny-sdxl.safetensors');
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
beforeAll(() => writeSingleFile(SINGLE));

describe('single-file SDXL (original key names)', () => {
  it('binds every parameter to the same values as the diffusers folder', () => {
    const single = loadStableDiffusion(SINGLE, { config: TINY_SDXL, tokenizer: join(TINY_SDXL, 'tokenizer') });
    const folder = loadStableDiffusion(TINY_SDXL);
    expect(single.warnings).toEqual([]);
    expect(single.forceZerosForEmptyPrompt).toBe(true);
    for (const part of ['unet', 'vae', 'textEncoder', 'textEncoder2'] as const) {
      const want = new Map(folder[part]!.parameters().map((p) => [p.name, p.value()]));
      const params = single[part]!.parameters();
      expect(params.length, part).toBe(want.size);
      for (const p of params) expect(maxAbsDiff(p.value(), want.get(p.name)!), `${part} ${p.name}`).toBe(0);
    }
    expect(single.tokenizer2!.padTokenId).toBe(0);
    expect(single.tokenizer.padTokenId).toBe(49407);
  });

  it('encodes prompts as diffusers does (sdxl_encode_prompt, within 1e-5)', async () => {
    const sd = StableDiffusion.load(SINGLE, { config: TINY_SDXL, tokenizer: join(TINY_SDXL, 'tokenizer') });
    const ref = readSafetensors(referenceCase('sdxl_encode_prompt').file);
    const got = await sd.encodeConditioning(['a photo of a cat']);
    expect(maxAbsDiff(got.states, ref.get('prompt_embeds')!.data as Float32Array)).toBeLessThan(1e-5);
    expect(maxAbsDiff(got.pooled!, ref.get('pooled_prompt_embeds')!.data as Float32Array)).toBeLessThan(1e-5);
    await sd.releaseTextEncoder();
  });

  it('an LCM-distilled UNet (LCM-SDXL): the cond_proj width into the UNet config, LCMScheduler as its sampler', () => {
    const path = join(tmp, 'tiny-lcm-sdxl.safetensors');
    const tensors: Map<string, WritableTensor> = new Map(readSafetensors(SINGLE));
    const projection = Float32Array.from({ length: 32 * 8 }, (_, i) => Math.sin(i));
    tensors.set('model.diffusion_model.time_embedding.cond_proj.weight', { dtype: 'F32', shape: [32, 8], data: projection });
    writeSafetensors(path, tensors);
    const single = loadStableDiffusion(path, { config: TINY_SDXL, tokenizer: join(TINY_SDXL, 'tokenizer') });
    expect(single.warnings).toEqual([]);
    expect(single.unet.config.time_cond_proj_dim).toBe(8);
    expect(maxAbsDiff(single.unet.time_embedding.cond_proj!.weight.value(), projection)).toBe(0);
    expect(single.schedulerConfig._class_name).toBe('LCMScheduler');
  });

  it("without a config folder, a file that is not SDXL base's shape is refused naming the tensors and --config", () => {
    expect(() => loadStableDiffusion(SINGLE, { tokenizer: join(TINY_SDXL, 'tokenizer') })).toThrow(/not SDXL base's shapes:[\s\S]*input_blocks\.0\.0\.weight: expected \[320, 4, 3, 3\], found \[32, 4, 3, 3\][\s\S]*--config DIR/);
    expect(() => loadStableDiffusion(SINGLE, { config: join(TINY_SDXL, 'model_index.json'), tokenizer: join(TINY_SDXL, 'tokenizer') })).toThrow(/takes a diffusers SDXL folder/);
    expect(SafetensorsFile.open(SINGLE).has('conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight')).toBe(true);
  });
});
