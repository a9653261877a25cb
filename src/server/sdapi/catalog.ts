// What the A1111 layer knows of the models folder: checkpoints (sd-models), LoRAs and Textual
// Inversion embeddings by A1111's names, read through the server's ModelRegistry.

import { basename, extname } from 'node:path';
import { readEmbeddingFile } from '../../models/textual-inversion.ts';

export interface RegistryEntry {
  name: string;
  path: string;
}

type Awaitable<T> = T | Promise<T>;

/** The part of the server's ModelRegistry this layer reads. */
export interface SdapiModelRegistry {
  models(): Awaitable<readonly RegistryEntry[]>;
  loras(): Awaitable<readonly RegistryEntry[]>;
  embeddings(): Awaitable<readonly RegistryEntry[]>;
  /** ControlNet models (the extension's model_list); absent: none. */
  controlnets?(): Awaitable<readonly RegistryEntry[]>;
  /** VAEs (sd-vae, override_settings.sd_vae); absent: none. */
  vaes?(): Awaitable<readonly RegistryEntry[]>;
}

/** A1111's GET /sdapi/v1/sd-vae item: its model_name is the file's (or folder's) name. */
export function sdVaeItem(vae: RegistryEntry) {
  return { model_name: basename(vae.path), filename: vae.path };
}

/**
 * A1111's "Automatic" VAE for a checkpoint file: the first VAE (in listing order) whose file name
 * starts with the checkpoint's file name less its extension — `NAME.vae.safetensors` beside
 * `NAME.safetensors`, or `NAME….safetensors` in the VAE folder. None for a diffusers folder, which
 * carries its own.
 */
export function vaeNearCheckpoint(model: RegistryEntry, vaes: readonly RegistryEntry[]): RegistryEntry | undefined {
  if (!/\.safetensors$/i.test(model.path)) return undefined;
  const stem = basename(model.path).replace(/\.safetensors$/i, '');
  return vaes.find((vae) => basename(vae.path).startsWith(stem));
}

/** The registry's name of the bundled model, which is always there. */
export { DEFAULT_MODEL } from '../models.ts';

/** A1111's GET /sdapi/v1/sd-models item. Hashes are not computed (A1111 also answers null until it has). */
export function sdModelItem(model: RegistryEntry) {
  return { title: model.name, model_name: model.name, hash: null, sha256: null, filename: model.path, config: null };
}

/**
 * Finds a checkpoint by what clients send as `sd_model_checkpoint`: the title, the model name, a
 * file name ("x.safetensors"), or A1111's "name [hash]" form.
 */
export function findModel(models: readonly RegistryEntry[], wanted: string): RegistryEntry | undefined {
  const plain = wanted.replace(/\s*\[[0-9a-f]+\]\s*$/i, '').trim();
  const stem = basename(plain, extname(plain));
  return models.find((m) => m.name === plain) ?? models.find((m) => m.name === stem || basename(m.path) === plain || basename(m.path, extname(m.path)) === stem);
}

export interface EmbeddingInfo {
  name: string;
  /** What a prompt writes to use it. */
  token: string;
  vectors: number;
  shape: number;
}

/** Reads embedding files once each (by path and size of the registry's list); unreadable ones are skipped. */
export class EmbeddingIndex {
  private readonly cache = new Map<string, EmbeddingInfo | { name: string; error: string }>();

  read(entries: readonly RegistryEntry[]): { loaded: EmbeddingInfo[]; skipped: { name: string; error: string }[] } {
    const loaded: EmbeddingInfo[] = [];
    const skipped: { name: string; error: string }[] = [];
    for (const entry of entries) {
      let info = this.cache.get(entry.path);
      if (!info) {
        try {
          const embedding = readEmbeddingFile(entry.path);
          info = { name: entry.name, token: embedding.token, vectors: embedding.vectors.length, shape: embedding.vectors[0]?.length ?? 0 };
        } catch (error) {
          info = { name: entry.name, error: (error as Error).message };
        }
        this.cache.set(entry.path, info);
      }
      if ('error' in info) skipped.push(info);
      else loaded.push(info);
    }
    return { loaded, skipped };
  }
}

/** The embeddings whose token a prompt uses: A1111 applies an embedding wherever its token appears. */
export function embeddingsInPrompt(prompts: readonly string[], embeddings: readonly EmbeddingInfo[]): string[] {
  const used = (token: string) => {
    const pattern = new RegExp(`(^|[^\\w<>-])${token.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}($|[^\\w<>-])`);
    return prompts.some((p) => pattern.test(p));
  };
  return embeddings.filter((e) => used(e.token)).map((e) => e.name);
}
