// The one weight-file finder. A model folder holds its tensors as diffusers and transformers save
// them: `<stem>.safetensors`, a variant `<stem>.<variant>.safetensors` (`fp16`), or either split
// into shards listed by `<stem>[.<variant>].safetensors.index.json`. `Weights` is what a finder
// opens: one file or all shards, looked up by tensor name as if they were one file.

import { existsSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { SafetensorsEntry, SafetensorsFile } from '../../engine/safetensors.ts';
import { inFile, readConfigFile } from './config-file.ts';

/** diffusers models save `diffusion_pytorch_model.*`, transformers models `model.*`. */
export type WeightStem = 'diffusion_pytorch_model' | 'model';

const INDEX_SUFFIX = '.safetensors.index.json';

/**
 * File names tried, in order: the asked variant first (single file, then sharded index) and the
 * plain weights after it; without a variant the plain weights first and the fp16 ones after.
 */
export function weightCandidates(stem: WeightStem, variant?: string): string[] {
  const order = variant ? [`${stem}.${variant}`, stem] : [stem, `${stem}.fp16`];
  return order.flatMap((base) => [`${base}.safetensors`, `${base}${INDEX_SUFFIX}`]);
}

/** The path of the folder's weights (a .safetensors file or a sharded index), or an error listing what is there. */
export function findWeights(dir: string, stem: WeightStem, variant?: string): string {
  const candidates = weightCandidates(stem, variant);
  for (const name of candidates) if (existsSync(join(dir, name))) return join(dir, name);
  const present = existsSync(dir) ? readdirSync(dir).join(', ') || 'nothing' : 'the folder does not exist';
  const pickle = /\.(bin|pt|pth|ckpt)\b/.test(present) ? ' (pickle checkpoints are never loaded: convert them to safetensors)' : '';
  const singles = candidates.filter((n) => !n.endsWith(INDEX_SUFFIX));
  throw new Error(`no ${singles.join(' or ')} (nor a sharded ${INDEX_SUFFIX} of them) in ${dir}${pickle}; found: ${present}`);
}

/** A model's tensors in one file or in the shards of an index, each name in exactly one file. */
export class Weights {
  private constructor(
    /** The .safetensors file or the index that lists the shards: what errors name. */
    readonly path: string,
    readonly files: readonly SafetensorsFile[],
    private readonly byName: ReadonlyMap<string, SafetensorsFile>,
  ) {}

  /** Opens a .safetensors file, or an index and every shard it lists. */
  static open(path: string): Weights {
    if (!path.endsWith(INDEX_SUFFIX)) return Weights.of(SafetensorsFile.open(path));
    const shards = readIndex(path);
    const files = [...new Set(shards.values())].map((shard) => SafetensorsFile.open(join(dirname(path), shard)));
    const byName = new Map<string, SafetensorsFile>();
    for (const file of files) {
      for (const name of file.names()) {
        const other = byName.get(name);
        if (other) throw new Error(`${path}: tensor "${name}" is in two shards, ${basename(other.path)} and ${basename(file.path)}`);
        byName.set(name, file);
      }
    }
    for (const [name, shard] of shards) {
      if (basename(byName.get(name)?.path ?? '') !== shard) throw new Error(`${path}: the weight_map puts tensor "${name}" in ${shard}, which does not hold it`);
    }
    return new Weights(path, files, byName);
  }

  /** One already open file. */
  static of(file: SafetensorsFile): Weights {
    return new Weights(file.path, [file], new Map(file.names().map((n) => [n, file])));
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The file holding the tensor, or undefined. */
  fileOf(name: string): SafetensorsFile | undefined {
    return this.byName.get(name);
  }

  entry(name: string): SafetensorsEntry {
    const file = this.byName.get(name);
    if (!file) throw new Error(`${this.path}: no tensor named ${JSON.stringify(name)}`);
    return file.entry(name);
  }

  close(): void {
    for (const file of this.files) file.close();
  }
}

/** An index's weight_map, tensor name → shard file name; shard names must stay in the index's folder. */
function readIndex(path: string): Map<string, string> {
  const json = readConfigFile(path, 'sharded weights index');
  return inFile(path, () => {
    const map = json.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new Error('"weight_map" must be an object of tensor name → shard file name');
    const shards = new Map<string, string>();
    for (const [name, shard] of Object.entries(map)) {
      if (typeof shard !== 'string' || !shard.endsWith('.safetensors') || basename(shard) !== shard || shard.includes('\\') || shard.startsWith('.')) {
        throw new Error(`"weight_map" entry "${name}" must name a .safetensors file beside the index, got ${JSON.stringify(shard)}`);
      }
      shards.set(name, shard);
    }
    if (!shards.size) throw new Error('"weight_map" lists no tensors');
    return shards;
  });
}

/** Finds and opens a folder's weights. */
export function openWeights(dir: string, stem: WeightStem, variant?: string): Weights {
  return Weights.open(findWeights(dir, stem, variant));
}
