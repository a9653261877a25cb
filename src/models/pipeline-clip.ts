// The whole CLIP of a pipeline whose text encoder was trained contrastively with an image tower (the
// default model): text_encoder/ is the usual CLIPTextModel that every SD loader reads; the rest of
// the CLIPModel lives in image_encoder/ as a CLIPVisionModelWithProjection (the component name
// diffusers gives an image tower) whose weights file also holds the text projection and the learned
// temperature:
//
//   image_encoder/config.json          CLIPVisionConfig + projection_dim (+ the text's projection size)
//   image_encoder/model.safetensors    vision_model.*, visual_projection.weight,
//                                      text_projection.weight, logit_scale
//
// transformers loads that folder as CLIPVisionModelWithProjection (ignoring the two text tensors);
// `loadPipelineClip` puts both folders back together as a ClipModel for image–text similarity.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../engine/index.ts';
import { ClipModel } from './clip.ts';
import { parseClipConfig } from './checkpoint/clip-config.ts';
import { bindLocated } from './checkpoint/bind.ts';
import { type ConfigJson as Json, readConfigJson } from './checkpoint/config-file.ts';
import { openWeights } from './checkpoint/weights.ts';

export const IMAGE_ENCODER = 'image_encoder';
const TEXT_HEAD = ['text_projection.weight', 'logit_scale'];

/** Whether a pipeline folder carries the image half of its CLIP. */
export function hasPipelineClip(dir: string): boolean {
  return existsSync(join(dir, IMAGE_ENCODER, 'config.json'));
}

/**
 * Writes `<pipeline>/image_encoder/` (float32) from a trained transformers CLIPModel folder
 * (config.json with text_config and vision_config, model.safetensors).
 */
export function writeImageEncoder(clipDir: string, pipelineDir: string): void {
  const config = readConfigJson(clipDir);
  const vision = (config.vision_config ?? {}) as Json;
  const out = join(pipelineDir, IMAGE_ENCODER);
  mkdirSync(out, { recursive: true });
  const file = openWeights(clipDir, 'model');
  try {
    const names = file.names().filter((n) => n.startsWith('vision_model.') || n === 'visual_projection.weight' || TEXT_HEAD.includes(n));
    const tensors = new Map(
      names.map((name) => {
        const { shape } = file.entry(name);
        return [name, { dtype: 'F32' as const, shape: [...shape], data: file.fileOf(name)!.readFloat32(name) }];
      }),
    );
    writeSafetensors(join(out, 'model.safetensors'), tensors, { format: 'pt' });
  } finally {
    file.close();
  }
  const imageConfig = {
    architectures: ['CLIPVisionModelWithProjection'],
    model_type: 'clip_vision_model',
    ...vision,
    projection_dim: config.projection_dim,
    logit_scale_init_value: config.logit_scale_init_value,
  };
  writeFileSync(join(out, 'config.json'), `${JSON.stringify(imageConfig, null, 2)}\n`);
}

/** The pipeline's CLIPModel: text tower from text_encoder/, the rest from image_encoder/. */
export function loadPipelineClip(dir: string): ClipModel {
  if (!hasPipelineClip(dir)) throw new Error(`${dir} has no ${IMAGE_ENCODER}/ folder: it carries no CLIP image tower`);
  const textDir = join(dir, 'text_encoder');
  const imageDir = join(dir, IMAGE_ENCODER);
  const text = readConfigJson(textDir);
  const image = readConfigJson(imageDir);
  const model = new ClipModel(
    parseClipConfig({ text_config: text, vision_config: image, projection_dim: image.projection_dim, logit_scale_init_value: image.logit_scale_init_value }),
  );
  const textWeights = openWeights(textDir, 'model');
  const imageWeights = openWeights(imageDir, 'model');
  bindLocated(
    model.parameters(),
    (name) => {
      const weights = name.startsWith('text_model.') ? textWeights : imageWeights;
      const file = weights.fileOf(name);
      return file && { file, tensorName: name };
    },
    { what: 'CLIP model', from: `${textDir} and ${imageDir}` },
  );
  return model;
}
