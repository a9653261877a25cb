// Another VAE for a pipeline (`--vae PATH`): an AutoencoderKL folder, an AutoencoderKL .safetensors
// file (diffusers' names or the original `encoder.down.0.block.0…` ones, as the VAE files people
// download are), or an AutoencoderTiny folder (TAESD, TAESDXL). A single file carries no config:
// it gets the model's own VAE config, as other SD front ends do.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../engine/safetensors.ts';
import { type AutoencoderTiny, tinyDownscale } from './autoencoder-tiny.ts';
import { bindLocated } from './checkpoint/bind.ts';
import { bindVaeWeights, loadAutoencoderTiny, loadVae } from './checkpoint/components.ts';
import { readConfigFile } from './checkpoint/config-file.ts';
import { Weights } from './checkpoint/weights.ts';
import { VAE_PREFIX } from './checkpoint-config.ts';
import { type ParameterMap, assertNotPickle, singleFileLocator, vaeTarget } from './single-file.ts';
import { AutoencoderKL, type VaeConfig, vaeDownscale } from './vae.ts';

export type OtherVae = { kind: 'kl'; vae: AutoencoderKL } | { kind: 'tiny'; vae: AutoencoderTiny };

/** Tensors a standalone original-layout VAE file may carry that no parameter uses. */
const IGNORED = /^(loss\.|model_ema\.)/;

/** A VAE whose latents do not fit the model's (another model family). */
export class VaeMismatchError extends Error {}

/**
 * Loads the VAE at `path` for a model whose own VAE has `modelVae` as config, and checks that it
 * fits: the same latent channels and the same downscale (else it belongs to another model family).
 */
export function loadOtherVae(path: string, modelVae: VaeConfig): OtherVae {
  if (!existsSync(path)) throw new Error(`no such VAE folder or file: ${path}`);
  const other = statSync(path).isFile() ? fromFile(path, modelVae) : fromFolder(path);
  const latentChannels = other.vae.config.latent_channels;
  const f = other.kind === 'tiny' ? tinyDownscale(other.vae.config) : vaeDownscale(other.vae.config);
  if (latentChannels !== modelVae.latent_channels || f !== vaeDownscale(modelVae)) {
    throw new VaeMismatchError(`${path}: this VAE has ${latentChannels} latent channels at 1/${f} of the picture's size, the model's has ${modelVae.latent_channels} at 1/${vaeDownscale(modelVae)} (a VAE of another model family?)`);
  }
  return other;
}

function fromFolder(path: string): OtherVae {
  // A whole diffusers model folder lends its vae/.
  const dir = !existsSync(join(path, 'config.json')) && existsSync(join(path, 'vae', 'config.json')) ? join(path, 'vae') : path;
  const json = readConfigFile(join(dir, 'config.json'), 'VAE config');
  const kind = json._class_name ?? 'AutoencoderKL';
  if (kind === 'AutoencoderTiny') return { kind: 'tiny', vae: loadAutoencoderTiny(dir) };
  if (kind === 'AutoencoderKL') return { kind: 'kl', vae: loadVae(dir) };
  throw new Error(`${join(dir, 'config.json')}: _class_name ${JSON.stringify(kind)} is not a VAE Nuri can use (AutoencoderKL or AutoencoderTiny)`);
}

function fromFile(path: string, modelVae: VaeConfig): OtherVae {
  assertNotPickle(path);
  const file = SafetensorsFile.open(path);
  const names = file.names();
  const has = (re: RegExp) => names.some((n) => re.test(n));
  if (has(/^(encoder\.down_blocks|decoder\.up_blocks)\./)) {
    const vae = new AutoencoderKL(modelVae);
    bindVaeWeights(vae, Weights.of(file));
    return { kind: 'kl', vae };
  }
  // Original layout, alone or under first_stage_model. (a whole checkpoint lends its VAE).
  const prefix = names.some((n) => n.startsWith(`${VAE_PREFIX}encoder.down.`)) ? VAE_PREFIX : '';
  if (has(new RegExp(`^${prefix.replace('.', '\\.')}encoder\\.down\\.\\d+\\.block\\.`))) {
    const vae = new AutoencoderKL(modelVae);
    const map: ParameterMap = new Map();
    const unexpected: string[] = [];
    for (const name of names) {
      if (!name.startsWith(prefix) || IGNORED.test(name.slice(prefix.length))) continue;
      const target = vaeTarget(name.slice(prefix.length), modelVae);
      if (target && !map.has(target.name)) map.set(target.name, { tensorName: name, sameBytes: target.sameBytes });
      else unexpected.push(name);
    }
    if (unexpected.length) throw new Error(`${path}: ${unexpected.length} tensor(s) fit no parameter of the model's VAE config: ${unexpected.slice(0, 8).join(', ')}`);
    bindLocated(vae.parameters(), singleFileLocator(file, map), { what: 'VAE', from: path });
    return { kind: 'kl', vae };
  }
  const tiny = has(/^(encoder|decoder)\.layers\.\d+\./) ? ' (an AutoencoderTiny: give its folder, with config.json)' : '';
  throw new Error(`${path} is neither an AutoencoderKL (tensors encoder.down_blocks.*, or encoder.down.* in the original layout) nor an AutoencoderTiny folder${tiny}; its tensors start ${names.slice(0, 3).join(', ') || '(none)'}`);
}
