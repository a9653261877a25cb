import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Parameter } from '../../src/engine/parameter.ts';
import { SafetensorsFile, type WritableTensor, writeSafetensors } from '../../src/engine/safetensors.ts';
import { bindLocated } from '../../src/models/checkpoint/bind.ts';
import { parseOriginalConfig } from '../../src/models/checkpoint-config.ts';
import { detectSingleFileConfig } from '../../src/models/checkpoint-detect.ts';
import { ClipTextModel, encodePrompts } from '../../src/models/clip-text.ts';
import { parseClipTextConfig } from '../../src/models/checkpoint/clip-config.ts';
import { loadClipTextModel } from '../../src/models/checkpoint/components.ts';
import {
  assertNotPickle, loadSingleFile, mapSingleFileKeys, openSingleFileCheckpoint, type ParameterMap, singleFileLocator,
} from '../../src/models/single-file.ts';
import { FIXTURES, TINY_SD } from '../fixtures.ts';

const SINGLE = join(FIXTURES, 'tiny-sd-single.safetensors');
const FIXTURE_YAML = readFileSync(join(FIXTURES, 'tiny-sd-single.yaml'), 'utf8');
// The fixture YAML names the text encoder's class only; its 32-wide tiny CLIP has 4 heads, which no shape tells.
const YAML = FIXTURE_YAML.replace(/(target: ldm\.modules\.encoders\.modules\.FrozenCLIPEmbedder)\s*$/, '$1\n      params:\n        num_heads: 4\n');

const tmp = mkdtempSync(join(tmpdir(), 'nuri-single-file-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const diffusers = {
  unet: SafetensorsFile.open(join(TINY_SD, 'unet', 'diffusion_pytorch_model.safetensors')),
  vae: SafetensorsFile.open(join(TINY_SD, 'vae', 'diffusion_pytorch_model.safetensors')),
  textEncoder: SafetensorsFile.open(join(TINY_SD, 'text_encoder', 'model.safetensors')),
};
const diffusersConfig = (part: string, name = 'config.json') => JSON.parse(readFileSync(join(TINY_SD, part, name), 'utf8')) as Record<string, unknown>;

/** The bytes a mapping entry stands for: the stored tensor's, or its row range's. */
function mappedBytes(file: SafetensorsFile, { tensorName, rows }: { tensorName: string; rows?: { start: number; count: number } }): Buffer {
  const bytes = file.readBytes(tensorName);
  if (!rows) return bytes;
  const rowBytes = bytes.length / file.entry(tensorName).shape[0]!;
  return bytes.subarray(rows.start * rowBytes, (rows.start + rows.count) * rowBytes);
}

/** Every tensor of a diffusers file (but position_ids, a buffer) has a mapped tensor with identical bytes, and nothing else is mapped. */
function expectSameTensors(file: SafetensorsFile, map: ParameterMap, reference: SafetensorsFile): void {
  const names = reference.names().filter((n) => !n.endsWith('position_ids'));
  expect([...map.keys()].sort()).toEqual([...names].sort());
  for (const name of names) {
    const mapped = map.get(name)!;
    const found = mapped.rows ? [mapped.rows.count, ...file.entry(mapped.tensorName).shape.slice(1)] : file.entry(mapped.tensorName).shape;
    const want = reference.entry(name).shape;
    if (mapped.sameBytes) expect(found.reduce((a, b) => a * b, 1), name).toBe(want.reduce((a, b) => a * b, 1));
    else expect(found, name).toEqual(want);
    expect(mappedBytes(file, mapped).equals(reference.readBytes(name)), name).toBe(true);
  }
}

/** Binds parameters shaped as the diffusers tensors through the locator and checks every value. */
function expectBindsLikeDiffusers(file: SafetensorsFile, map: ParameterMap, reference: SafetensorsFile): void {
  const params = reference.names().filter((n) => !n.endsWith('position_ids')).map((n) => new Parameter(n, reference.entry(n).shape));
  bindLocated(params, singleFileLocator(file, map), { what: 'test model', from: file.path });
  const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  for (const p of params) expect(bytes(p.value()).equals(bytes(reference.readFloat32(p.name))), p.name).toBe(true);
}

describe('tiny-sd-single with its YAML', () => {
  const file = SafetensorsFile.open(SINGLE);
  const config = parseOriginalConfig(YAML, file);
  const mapping = mapSingleFileKeys(file, config.kind, config.unet, config.vae, config.text_encoder);

  it('maps every diffusers UNet, VAE and text encoder tensor to identical bytes', () => {
    expectSameTensors(file, mapping.unet, diffusers.unet);
    expectSameTensors(file, mapping.vae, diffusers.vae);
    expectSameTensors(file, mapping.textEncoder, diffusers.textEncoder);
    expect(mapping.unmapped).toEqual([]);
    expect(mapping.ignored).toEqual(['cond_stage_model.transformer.text_model.embeddings.position_ids']);
  });

  it('binds parameters through the locator, VAE attention convs as linears', () => {
    expectBindsLikeDiffusers(file, mapping.unet, diffusers.unet);
    expectBindsLikeDiffusers(file, mapping.vae, diffusers.vae);
    expectBindsLikeDiffusers(file, mapping.textEncoder, diffusers.textEncoder);
    expect(mapping.vae.get('encoder.mid_block.attentions.0.to_q.weight')).toEqual({ tensorName: 'first_stage_model.encoder.mid.attn_1.q.weight', sameBytes: true });
    expect(mapping.vae.get('decoder.up_blocks.0.upsamplers.0.conv.bias')?.tensorName).toBe('first_stage_model.decoder.up.3.upsample.conv.bias');
    expect(mapping.unet.get('up_blocks.1.upsamplers.0.conv.weight')?.tensorName).toBe('model.diffusion_model.output_blocks.5.2.conv.weight');
    expect(mapping.unet.get('up_blocks.0.upsamplers.0.conv.weight')?.tensorName).toBe('model.diffusion_model.output_blocks.2.1.conv.weight');
  });

  it('reports missing tensors and wrong shapes with expected and found', () => {
    const params = [
      new Parameter('conv_in.weight', [32, 4, 5, 5]),
      new Parameter('down_blocks.3.attentions.0.norm.weight', [64]),
    ];
    expect(() => bindLocated(params, singleFileLocator(file, mapping.unet), { what: 'unet', from: file.path })).toThrow(
      /2 problem\(s\)[\s\S]*model\.diffusion_model\.input_blocks\.0\.0\.weight.*expected shape \[32, 4, 5, 5\].*found \[32, 4, 3, 3\][\s\S]*missing tensor for down_blocks\.3\.attentions\.0\.norm\.weight/,
    );
  });

  it('parses the YAML into the diffusers configs', () => {
    const unet = diffusersConfig('unet');
    for (const key of ['block_out_channels', 'layers_per_block', 'cross_attention_dim', 'attention_head_dim', 'sample_size', 'in_channels', 'out_channels', 'down_block_types', 'up_block_types', 'use_linear_projection', 'transformer_layers_per_block']) {
      expect(config.unet[key as keyof typeof config.unet], key).toEqual(unet[key]);
    }
    const vae = diffusersConfig('vae');
    for (const key of ['block_out_channels', 'layers_per_block', 'latent_channels', 'scaling_factor', 'sample_size', 'in_channels', 'out_channels', 'down_block_types', 'up_block_types']) {
      expect(config.vae[key as keyof typeof config.vae], key).toEqual(vae[key]);
    }
    const text = diffusersConfig('text_encoder');
    for (const key of ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'max_position_embeddings', 'vocab_size', 'hidden_act']) {
      expect(config.text_encoder[key as keyof typeof config.text_encoder], key).toEqual(text[key]);
    }
    const scheduler = diffusersConfig('scheduler', 'scheduler_config.json');
    for (const key of ['beta_start', 'beta_end', 'beta_schedule', 'num_train_timesteps', 'prediction_type', 'set_alpha_to_one', 'steps_offset', 'timestep_spacing', 'skip_prk_steps', 'clip_sample']) {
      expect(config.scheduler[key as keyof typeof config.scheduler], key).toEqual(scheduler[key]);
    }
    expect(config.kind).toBe('sd1');
  });

  it('asks for the text head count when the width is not a multiple of 64', () => {
    expect(() => parseOriginalConfig(FIXTURE_YAML, file)).toThrow(/32 wide.*head count.*num_heads: N/);
  });

  it('refuses to guess the configs without the YAML, naming the unexpected shapes and --config', () => {
    expect(() => detectSingleFileConfig(file)).toThrow(/not a standard Stable Diffusion 1\.x[\s\S]*input_blocks\.0\.0\.weight: expected \[320, 4, 3, 3\], found \[32, 4, 3, 3\][\s\S]*--config FILE/);
  });

  it('maps old files whose text encoder keys lack the text_model. level', () => {
    const path = join(tmp, 'old-clip.safetensors');
    const tensors = new Map<string, WritableTensor>();
    for (const name of file.names()) tensors.set(name.replace('cond_stage_model.transformer.text_model.', 'cond_stage_model.transformer.'), file.read(name));
    writeSafetensors(path, tensors);
    const old = SafetensorsFile.open(path);
    const oldConfig = parseOriginalConfig(YAML, old);
    expect(oldConfig.text_encoder).toEqual(config.text_encoder);
    const oldMapping = mapSingleFileKeys(old, 'sd1', oldConfig.unet, oldConfig.vae, oldConfig.text_encoder);
    expectSameTensors(old, oldMapping.textEncoder, diffusers.textEncoder);
    expect(oldMapping.ignored).toEqual(['cond_stage_model.transformer.embeddings.position_ids']);
  });

  it('opens the checkpoint end to end', () => {
    const opened = openSingleFileCheckpoint(SINGLE, { originalConfigYaml: YAML });
    expect(opened.warnings).toEqual([]);
    expect(opened.mapping.unet.size).toBe(diffusers.unet.names().length);
  });
});

// ---- SD 2.x: OpenCLIP's fused in_proj -------------------------------------------------------------

/** The tiny checkpoint with its text encoder rewritten in OpenCLIP's layout (q, k, v stacked into in_proj). */
function writeOpenClipVariant(path: string, extra: Record<string, WritableTensor> = {}): void {
  const source = SafetensorsFile.open(SINGLE);
  const tensors = new Map<string, WritableTensor>();
  const prefix = 'cond_stage_model.transformer.text_model.';
  const renames: [RegExp, string][] = [
    [/^embeddings\.position_embedding\.weight$/, 'positional_embedding'],
    [/^embeddings\.token_embedding\.weight$/, 'token_embedding.weight'],
    [/^final_layer_norm\./, 'ln_final.'],
    [/^encoder\.layers\.(\d+)\.layer_norm1\./, 'transformer.resblocks.$1.ln_1.'],
    [/^encoder\.layers\.(\d+)\.layer_norm2\./, 'transformer.resblocks.$1.ln_2.'],
    [/^encoder\.layers\.(\d+)\.mlp\.fc1\./, 'transformer.resblocks.$1.mlp.c_fc.'],
    [/^encoder\.layers\.(\d+)\.mlp\.fc2\./, 'transformer.resblocks.$1.mlp.c_proj.'],
    [/^encoder\.layers\.(\d+)\.self_attn\.out_proj\./, 'transformer.resblocks.$1.attn.out_proj.'],
  ];
  for (const name of source.names()) {
    const t = source.read(name);
    if (!name.startsWith(prefix)) {
      tensors.set(name, t);
      continue;
    }
    const local = name.slice(prefix.length);
    const qkv = /^encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$/.exec(local);
    if (qkv) {
      if (qkv[2] !== 'q') continue;
      const parts = ['q', 'k', 'v'].map((p) => source.read(`${prefix}encoder.layers.${qkv[1]}.self_attn.${p}_proj.${qkv[3]}`));
      const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
      parts.forEach((p, i) => data.set(p.data as Float32Array, i * p.data.length));
      tensors.set(`cond_stage_model.model.transformer.resblocks.${qkv[1]}.attn.in_proj_${qkv[3]}`, { dtype: 'F32', shape: [3 * t.shape[0]!, ...t.shape.slice(1)], data });
      continue;
    }
    const rename = renames.find(([re]) => re.test(local));
    if (rename) tensors.set(`cond_stage_model.model.${local.replace(rename[0], rename[1])}`, t);
  }
  for (const [name, t] of Object.entries(extra)) tensors.set(name, t);
  writeSafetensors(path, tensors);
}

const SD2_YAML = YAML.replace('FrozenCLIPEmbedder', 'FrozenOpenCLIPEmbedder');

describe('an SD 2.x-style (OpenCLIP) text encoder', () => {
  const path = join(tmp, 'open-clip.safetensors');
  const f32 = (shape: number[]): WritableTensor => ({ dtype: 'F32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
  writeOpenClipVariant(path, {
    'cond_stage_model.model.text_projection': f32([32, 32]),
    'cond_stage_model.model.logit_scale': f32([]),
    'model_ema.decay': f32([]),
    'alphas_cumprod': f32([1000]),
    'model.diffusion_model.label_emb.0.0.weight': f32([4, 4]),
    'cond_stage_model.model.transformer.resblocks.0.attn.bogus': f32([2]),
  });
  const file = SafetensorsFile.open(path);

  it('splits in_proj into q, k and v row ranges with identical bytes', () => {
    const config = parseOriginalConfig(SD2_YAML, file);
    expect(config.kind).toBe('sd2');
    expect(config.text_encoder).toMatchObject({ hidden_size: 32, num_hidden_layers: 5, num_attention_heads: 4, intermediate_size: 37, hidden_act: 'gelu', pad_token_id: 0 });
    const mapping = mapSingleFileKeys(file, 'sd2', config.unet, config.vae, config.text_encoder);
    expect(mapping.textEncoder.get('text_model.encoder.layers.2.self_attn.k_proj.weight')).toEqual({
      tensorName: 'cond_stage_model.model.transformer.resblocks.2.attn.in_proj_weight', rows: { start: 32, count: 32 },
    });
    expectSameTensors(file, mapping.textEncoder, diffusers.textEncoder);
    expectBindsLikeDiffusers(file, mapping.textEncoder, diffusers.textEncoder);
    expect(mapping.unmapped.sort()).toEqual(['cond_stage_model.model.transformer.resblocks.0.attn.bogus', 'model.diffusion_model.label_emb.0.0.weight']);
    expect(mapping.ignored.sort()).toEqual(['alphas_cumprod', 'cond_stage_model.model.logit_scale', 'cond_stage_model.model.text_projection', 'model_ema.decay']);
  });

  it('points a row-range parameter at just those rows\' bytes (what ONNX external data reads)', () => {
    const config = parseOriginalConfig(SD2_YAML, file);
    const mapping = mapSingleFileKeys(file, 'sd2', config.unet, config.vae, config.text_encoder);
    const v = new Parameter('text_model.encoder.layers.0.self_attn.v_proj.bias', [32]);
    bindLocated([v], singleFileLocator(file, mapping.textEncoder), { what: 'text', from: file.path });
    const whole = file.entry('cond_stage_model.model.transformer.resblocks.0.attn.in_proj_bias');
    expect(v.source).toMatchObject({ kind: 'file', entry: { dataOffset: whole.dataOffset + 64 * 4, byteLength: 32 * 4, shape: [32] } });
    const wrong = new Parameter('text_model.encoder.layers.0.self_attn.q_proj.weight', [32, 16]);
    expect(() => bindLocated([wrong], singleFileLocator(file, mapping.textEncoder), { what: 'text', from: file.path })).toThrow(/in_proj_weight.*expected shape \[32, 16\].*found \[32, 32\]/);
  });

  it('drops the last layer for layer: penultimate, and ignores its tensors', () => {
    const yaml = SD2_YAML.replace('num_heads: 4', 'num_heads: 4\n        layer: penultimate');
    const config = parseOriginalConfig(yaml, file);
    expect(config.text_encoder.num_hidden_layers).toBe(4);
    const mapping = mapSingleFileKeys(file, 'sd2', config.unet, config.vae, config.text_encoder);
    expect(mapping.ignored.filter((n) => n.includes('resblocks.4.'))).toHaveLength(12);
    expect([...mapping.textEncoder.keys()].some((n) => n.includes('layers.4.'))).toBe(false);
  });

  it('warns about unused tensors when opened', () => {
    const opened = openSingleFileCheckpoint(path, { originalConfigYaml: SD2_YAML });
    expect(opened.warnings).toHaveLength(1);
    expect(opened.warnings[0]).toMatch(/2 tensor\(s\) .* unused: .*label_emb/);
  });
});

// ---- loading the models -------------------------------------------------------------------------------

describe('loadSingleFile', () => {
  const prompts = ['a photo of an astronaut riding a horse', ''];
  const tokenizer = join(TINY_SD, 'tokenizer');

  it('binds the UNet, VAE and text encoder; the text encoder runs exactly as the diffusers one', async () => {
    const yamlPath = join(tmp, 'tiny.yaml');
    writeFileSync(yamlPath, YAML);
    const loaded = loadSingleFile(SINGLE, { config: yamlPath, tokenizer, onWarning: () => expect.unreachable() });
    expect(loaded.unet.parameters()).toHaveLength(diffusers.unet.names().length);
    expect(loaded.vae.parameters()).toHaveLength(diffusers.vae.names().length);
    expect(loaded.schedulerConfig.prediction_type).toBe('epsilon');
    const reference = loadClipTextModel(join(TINY_SD, 'text_encoder'));
    const ours = await encodePrompts(loaded.textEncoder, loaded.tokenizer, prompts);
    const theirs = await encodePrompts(reference, loaded.tokenizer, prompts);
    expect(Buffer.from(ours.data.buffer).equals(Buffer.from(theirs.data.buffer))).toBe(true);
  });

  it('runs an OpenCLIP text encoder whose q, k, v are row ranges of in_proj', async () => {
    const path = join(tmp, 'open-clip-only.safetensors');
    writeOpenClipVariant(path);
    const yamlPath = join(tmp, 'sd2.yaml');
    writeFileSync(yamlPath, SD2_YAML);
    const loaded = loadSingleFile(path, { config: yamlPath, tokenizer, predictionType: 'v_prediction' });
    expect(loaded.schedulerConfig.prediction_type).toBe('v_prediction');
    expect(loaded.tokenizer.padTokenId).toBe(0);
    const reference = new ClipTextModel(parseClipTextConfig({ ...diffusersConfig('text_encoder'), hidden_act: 'gelu' }));
    bindLocated(reference.parameters(), (name) => ({ file: diffusers.textEncoder, tensorName: name }), { what: 'reference', from: diffusers.textEncoder.path });
    const ours = await encodePrompts(loaded.textEncoder, loaded.tokenizer, prompts);
    const theirs = await encodePrompts(reference, loaded.tokenizer, prompts);
    expect(Buffer.from(ours.data.buffer).equals(Buffer.from(theirs.data.buffer))).toBe(true);
  });

  it('needs a tokenizer folder', () => {
    expect(() => loadSingleFile(SINGLE)).toThrow(/no tokenizer.*vocab\.json/);
  });
});

// ---- recognising the standard shapes ----------------------------------------------------------------

/** Zero-filled tensors with the shapes that identify a standard SD 1.x / 2.x checkpoint (about 1 MB). */
function standardTensors(kind: 'sd1' | 'sd2', inChannels = 4): Map<string, WritableTensor> {
  const t = new Map<string, WritableTensor>();
  const add = (name: string, shape: number[]) => t.set(name, { dtype: 'F16', shape, data: new Uint16Array(shape.reduce((a, b) => a * b, 1)) });
  const u = 'model.diffusion_model.';
  add(`${u}input_blocks.0.0.weight`, [320, inChannels, 3, 3]);
  add(`${u}out.0.weight`, [320]);
  add(`${u}out.2.weight`, [4, 320, 3, 3]);
  add(`${u}time_embed.0.weight`, [1280, 320]);
  add(`${u}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight`, [320, kind === 'sd1' ? 768 : 1024]);
  add(`${u}input_blocks.1.1.proj_in.weight`, kind === 'sd1' ? [320, 320, 1, 1] : [320, 320]);
  add(`${u}middle_block.1.norm.weight`, [1280]);
  [320, 640, 1280, 1280].forEach((c, level) => {
    for (const i of [1, 2]) add(`${u}input_blocks.${3 * level + i}.0.out_layers.0.weight`, [c]);
    if (level < 3) {
      for (const i of [1, 2]) add(`${u}input_blocks.${3 * level + i}.1.norm.weight`, [c]);
      add(`${u}input_blocks.${3 * level + 3}.0.op.bias`, [c]);
    }
  });
  const v = 'first_stage_model.';
  add(`${v}encoder.conv_in.weight`, [128, 3, 3, 3]);
  add(`${v}decoder.conv_in.weight`, [512, 4, 3, 3]);
  add(`${v}quant_conv.weight`, [8, 8, 1, 1]);
  add(`${v}post_quant_conv.weight`, [4, 4, 1, 1]);
  [128, 256, 512, 512].forEach((c, level) => {
    add(`${v}encoder.down.${level}.block.1.norm1.weight`, [c]);
    add(`${v}decoder.up.${level}.block.2.norm1.weight`, [c]);
    if (level < 3) add(`${v}encoder.down.${level}.downsample.conv.bias`, [c]);
  });
  if (kind === 'sd1') {
    const p = 'cond_stage_model.transformer.text_model.';
    add(`${p}embeddings.position_embedding.weight`, [77, 768]);
    add(`${p}final_layer_norm.weight`, [768]);
    for (let i = 0; i < 12; i++) add(`${p}encoder.layers.${i}.layer_norm1.weight`, [768]);
  } else {
    const p = 'cond_stage_model.model.';
    add(`${p}positional_embedding`, [77, 1024]);
    add(`${p}ln_final.weight`, [1024]);
    for (let i = 0; i < 24; i++) add(`${p}transformer.resblocks.${i}.ln_1.weight`, [1024]);
  }
  return t;
}

function writeStandard(name: string, tensors: Map<string, WritableTensor>): SafetensorsFile {
  const path = join(tmp, name);
  writeSafetensors(path, tensors);
  return SafetensorsFile.open(path);
}

describe('detectSingleFileConfig', () => {
  it('recognises SD 1.x', () => {
    const config = detectSingleFileConfig(writeStandard('sd1.safetensors', standardTensors('sd1')));
    expect(config.kind).toBe('sd1');
    expect(config.unet).toMatchObject({ block_out_channels: [320, 640, 1280, 1280], cross_attention_dim: 768, attention_head_dim: 8, use_linear_projection: false, in_channels: 4, sample_size: 64 });
    expect(config.vae).toMatchObject({ block_out_channels: [128, 256, 512, 512], latent_channels: 4, scaling_factor: 0.18215 });
    expect(config.text_encoder).toMatchObject({ hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, hidden_act: 'quick_gelu' });
    expect(config.scheduler.prediction_type).toBe('epsilon');
    expect(config.notes).toEqual([]);
  });

  it('recognises SD 2.x, assuming ε-prediction and saying how to change it', () => {
    const config = detectSingleFileConfig(writeStandard('sd2.safetensors', standardTensors('sd2')));
    expect(config.kind).toBe('sd2');
    expect(config.unet).toMatchObject({ cross_attention_dim: 1024, attention_head_dim: [5, 10, 20, 20], use_linear_projection: true });
    expect(config.text_encoder).toMatchObject({ hidden_size: 1024, num_hidden_layers: 23, num_attention_heads: 16, hidden_act: 'gelu' });
    expect(config.scheduler.prediction_type).toBe('epsilon');
    expect(config.notes.join(' ')).toMatch(/--prediction-type v_prediction/);
  });

  it('recognises an inpainting UNet by its 9 input channels', () => {
    const config = detectSingleFileConfig(writeStandard('sd1-inpaint.safetensors', standardTensors('sd1', 9)));
    expect(config.unet.in_channels).toBe(9);
    expect(config.notes.join(' ')).toMatch(/inpainting/);
  });

  it('lists each unexpected shape and asks for --config', () => {
    const tensors = standardTensors('sd1');
    tensors.set('model.diffusion_model.middle_block.1.norm.weight', { dtype: 'F16', shape: [1024], data: new Uint16Array(1024) });
    tensors.delete('first_stage_model.quant_conv.weight');
    tensors.set('cond_stage_model.transformer.text_model.encoder.layers.12.layer_norm1.weight', { dtype: 'F16', shape: [768], data: new Uint16Array(768) });
    const file = writeStandard('odd.safetensors', tensors);
    let message = '';
    try {
      detectSingleFileConfig(file);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/3 tensor shape\(s\) are unexpected/);
    expect(message).toContain('model.diffusion_model.middle_block.1.norm.weight: expected [1280], found [1024]');
    expect(message).toContain('first_stage_model.quant_conv.weight: expected [8, 8, 1, 1], found no such tensor');
    expect(message).toContain('encoder.layers.12.layer_norm1.weight: expected no such tensor, found [768]');
    expect(message).toContain('--config FILE');
  });

  it('refuses SDXL by name', () => {
    const file = writeStandard('xl.safetensors', new Map([['conditioner.embedders.0.transformer.text_model.final_layer_norm.weight', { dtype: 'F16', shape: [768], data: new Uint16Array(768) }]]));
    expect(() => detectSingleFileConfig(file)).toThrow(/SDXL/);
  });
});

// ---- pickles -----------------------------------------------------------------------------------------

describe('assertNotPickle', () => {
  it('refuses pickle extensions without opening the file, saying why and what to do', () => {
    for (const ext of ['ckpt', 'bin', 'pt', 'pth']) {
      expect(() => assertNotPickle(join(tmp, `does-not-exist.${ext}`))).toThrow(/runs whatever code.*\.safetensors.*diffusers folder/);
    }
  });

  it('refuses pickles and torch zip archives by their first bytes, whatever the name', () => {
    const zip = join(tmp, 'zip.safetensors');
    writeFileSync(zip, Buffer.from('PK\x03\x04archive/data.pkl', 'latin1'));
    expect(() => assertNotPickle(zip)).toThrow(/zip archive/);
    const pickle = join(tmp, 'model.weights');
    writeFileSync(pickle, Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20]));
    expect(() => assertNotPickle(pickle)).toThrow(/Python pickle/);
  });

  it('accepts safetensors files, even one whose header length starts with the pickle byte', () => {
    expect(() => assertNotPickle(SINGLE)).not.toThrow();
    const tricky = join(tmp, 'tricky.safetensors');
    const header = Buffer.from(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`.padEnd(0x280, ' '));
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(tricky, Buffer.concat([length, header, Buffer.from([7])]));
    expect(length[0]).toBe(0x80);
    expect(() => assertNotPickle(tricky)).not.toThrow();
    expect(SafetensorsFile.open(tricky).names()).toEqual(['a']);
  });
});
