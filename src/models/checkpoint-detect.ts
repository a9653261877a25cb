// Recognising a standard Stable Diffusion 1.x or 2.x single-file checkpoint from the shapes of a
// few small tensors, and giving its diffusers configs. These are the checkpoints people download
// without a YAML; anything else needs its original-style config (see checkpoint-config.ts).

import type { SafetensorsFile } from '../engine/safetensors.ts';
import {
  checkpointKind, type CheckpointKind, schedulerConfig, type SingleFileConfig, textConfig, textTensorName, UNET_PREFIX,
  type UNetConfigJson, VAE_PREFIX, type VaeConfigJson,
} from './checkpoint-config.ts';

const SD_LEVELS = [320, 640, 1280, 1280];
const SD_VAE_LEVELS = [128, 256, 512, 512];

/** A tensor that must have this shape (or, with `absent`, must not exist). */
type Expectation = { name: string; shape?: number[]; absent?: true };

/** Small tensors whose shapes pin down the standard SD 1.x / 2.x topology (all under 20k elements). */
function standardExpectations(file: SafetensorsFile, kind: CheckpointKind, inChannels: number): Expectation[] {
  const u = (name: string, shape?: number[]): Expectation => ({ name: UNET_PREFIX + name, ...(shape ? { shape } : { absent: true }) });
  const v = (name: string, shape: number[]): Expectation => ({ name: VAE_PREFIX + name, shape });
  const context = kind === 'sd1' ? 768 : 1024;
  const list: Expectation[] = [
    u('input_blocks.0.0.weight', [320, inChannels, 3, 3]),
    u('out.2.weight', [4, 320, 3, 3]),
    u('out.0.weight', [320]),
    u('input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight', [320, context]),
    u('input_blocks.1.1.proj_in.weight', kind === 'sd1' ? [320, 320, 1, 1] : [320, 320]),
    u('middle_block.1.norm.weight', [1280]),
    u('input_blocks.10.1.norm.weight'), // the last level has no attention
    u('input_blocks.12.0.in_layers.0.weight'), // two resnets per level
  ];
  SD_LEVELS.forEach((c, level) => {
    const first = 1 + 3 * level; // input_blocks index of the level's first resnet
    list.push(u(`input_blocks.${first + 1}.0.out_layers.0.weight`, [c]));
    if (level < 3) list.push(u(`input_blocks.${first}.1.norm.weight`, [c]), u(`input_blocks.${first + 2}.0.op.bias`, [c]));
  });
  SD_VAE_LEVELS.forEach((c, level) => {
    list.push(v(`encoder.down.${level}.block.1.norm1.weight`, [c]), v(`decoder.up.${level}.block.2.norm1.weight`, [c]));
    if (level < 3) list.push(v(`encoder.down.${level}.downsample.conv.bias`, [c]));
  });
  list.push(
    v('encoder.conv_in.weight', [128, 3, 3, 3]),
    v('decoder.conv_in.weight', [512, 4, 3, 3]),
    v('quant_conv.weight', [8, 8, 1, 1]),
    v('post_quant_conv.weight', [4, 4, 1, 1]),
  );
  const t = (name: string, shape?: number[]): Expectation => ({ name: textTensorName(file, kind, name), ...(shape ? { shape } : { absent: true }) });
  if (kind === 'sd1') {
    list.push(
      t('text_model.embeddings.position_embedding.weight', [77, 768]),
      t('text_model.final_layer_norm.weight', [768]),
      t('text_model.encoder.layers.11.layer_norm1.weight', [768]),
      t('text_model.encoder.layers.12.layer_norm1.weight'),
    );
  } else {
    list.push(
      t('positional_embedding', [77, 1024]),
      t('ln_final.weight', [1024]),
      t('transformer.resblocks.23.ln_1.weight', [1024]),
      t('transformer.resblocks.24.ln_1.weight'),
    );
  }
  return list;
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * The configs of a standard SD 1.x or 2.x checkpoint (inpainting variants included), recognised
 * from the shapes of a few small tensors. Anything else needs its original YAML config.
 */
export function detectSingleFileConfig(file: SafetensorsFile): SingleFileConfig {
  const kind = checkpointKind(file);
  const convIn = UNET_PREFIX + 'input_blocks.0.0.weight';
  const inChannels = file.has(convIn) ? (file.entry(convIn).shape[1] ?? 0) : 0;
  const problems: string[] = [];
  if (inChannels !== 4 && inChannels !== 9) problems.push(`${convIn}: expected 4 (or 9 for inpainting) input channels, found ${file.has(convIn) ? shapeText(file.entry(convIn).shape) : 'no such tensor'}`);
  for (const e of standardExpectations(file, kind, inChannels)) {
    const found = file.has(e.name) ? file.entry(e.name).shape : undefined;
    if (e.absent && found) problems.push(`${e.name}: expected no such tensor, found ${shapeText(found)}`);
    else if (e.shape && !found) problems.push(`${e.name}: expected ${shapeText(e.shape)}, found no such tensor`);
    else if (e.shape && found && shapeText(found) !== shapeText(e.shape)) problems.push(`${e.name}: expected ${shapeText(e.shape)}, found ${shapeText(found)}`);
  }
  const name = kind === 'sd1' ? 'Stable Diffusion 1.x' : 'Stable Diffusion 2.x';
  if (problems.length) {
    const shown = problems.slice(0, 12).join('\n  ');
    throw new Error(
      `${file.path} is not a standard ${name} checkpoint: ${problems.length} tensor shape(s) are unexpected\n  ${shown}` +
        `${problems.length > 12 ? `\n  … and ${problems.length - 12} more` : ''}\n` +
        'Its configuration cannot be inferred from its tensors: pass --config FILE with its original-style YAML config (such as v1-inference.yaml).',
    );
  }
  const notes: string[] = [];
  const sd2 = kind === 'sd2';
  if (sd2) {
    notes.push(
      'Stable Diffusion 2.x: the 512-px base (ε-prediction) and 768-px (v-prediction) models have the same tensor shapes; ' +
        'assuming the 512-px ε-prediction model. For a 768-v model pass --prediction-type v_prediction (and 768-px sizes).',
    );
  }
  if (inChannels === 9) notes.push('9 input channels: an inpainting model (latents, mask and masked-image latents).');
  const unet: UNetConfigJson = {
    _class_name: 'UNet2DConditionModel',
    sample_size: 64,
    in_channels: inChannels,
    out_channels: 4,
    down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
    up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    block_out_channels: SD_LEVELS,
    layers_per_block: 2,
    cross_attention_dim: sd2 ? 1024 : 768,
    attention_head_dim: sd2 ? SD_LEVELS.map((c) => c / 64) : 8,
    use_linear_projection: sd2,
    transformer_layers_per_block: 1,
  };
  const vae: VaeConfigJson = {
    _class_name: 'AutoencoderKL',
    sample_size: 512,
    in_channels: 3,
    out_channels: 3,
    down_block_types: SD_VAE_LEVELS.map(() => 'DownEncoderBlock2D'),
    up_block_types: SD_VAE_LEVELS.map(() => 'UpDecoderBlock2D'),
    block_out_channels: SD_VAE_LEVELS,
    layers_per_block: 2,
    latent_channels: 4,
    scaling_factor: 0.18215,
  };
  const text = sd2
    ? textConfig('sd2', { hidden_size: 1024, intermediate_size: 4096, num_hidden_layers: 23, num_attention_heads: 16, max_position_embeddings: 77, vocab_size: 49408 })
    : textConfig('sd1', { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, max_position_embeddings: 77, vocab_size: 49408 });
  const scheduler = schedulerConfig('epsilon', { num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear' });
  return { kind, unet, vae, text_encoder: text, scheduler, notes };
}
