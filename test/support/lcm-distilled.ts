// A tiny LCM-distilled model for tests: a private copy of tiny-sd whose UNet config has
// time_cond_proj_dim, whose weights add time_embedding.cond_proj.weight [32, width], and whose
// scheduler is LCMScheduler. No diffusers recording exists for one, so its guidance path is checked
// by algebra against the plain UNet (test/models/lcm-unet.test.ts).
import { join } from 'node:path';
import { readSafetensors, writeSafetensors } from '../../src/engine/safetensors.ts';
import { copyTinySd, editJson } from '../model-copy.ts';

/** The guidance embedding width of the test model (LCM-Dreamshaper-v7 has 256). */
export const COND_WIDTH = 8;
/** tiny-sd's block_out_channels[0]: cond_proj's output width. */
export const TIME_CHANNELS = 32;

/** Writes the model with `projection` [TIME_CHANNELS, COND_WIDTH] as cond_proj's weight; returns its folder. */
export function writeLcmDistilled(projection: Float32Array): string {
  const dir = copyTinySd();
  // writeSafetensors renames a new file over the hard link: the shared fixture is not touched.
  const weights = join(dir, 'unet', 'diffusion_pytorch_model.safetensors');
  const tensors = readSafetensors(weights);
  tensors.set('time_embedding.cond_proj.weight', { dtype: 'F32', shape: [TIME_CHANNELS, COND_WIDTH], data: projection });
  writeSafetensors(weights, tensors);
  editJson(dir, 'unet/config.json', (json) => (json.time_cond_proj_dim = COND_WIDTH));
  editJson(dir, 'scheduler/scheduler_config.json', (json) => {
    json._class_name = 'LCMScheduler';
    json.original_inference_steps = 50;
  });
  return dir;
}
