// What the server can run: the models under --models (diffusers folders and single-file
// .safetensors), the bundled default model, and the LoRAs, Textual Inversion embeddings,
// ControlNets and VAEs in DIR/loras, DIR/embeddings (AUTOMATIC1111's folder names), DIR/controlnet
// and DIR/vae — and, as in A1111, a `NAME.vae.safetensors` among the checkpoints is a VAE, not a
// checkpoint, and a `NAME.yaml` beside `NAME.safetensors` is its original config. Listed afresh on
// each call, so a file copied in (or written by a training job) appears without a restart.

import { type Dirent, existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { bundledTokenizer, defaultModelPath } from '../models/bundled.ts';
import { embeddingFileToken } from '../models/textual-inversion.ts';
import { samplerDefaults } from '../pipelines/generate.ts';
import { StableDiffusion } from '../pipelines/stable-diffusion.ts';
import { carriesReweightsByDefault } from '../pipelines/reweight-carry.ts';

/** What a model gives a job that names no size, steps or guidance. */
export interface ModelRunDefaults {
  size: number;
  steps: number;
  guidance: number;
  /** Whether its edits carry re-weights into the words after them (its nuri.json). */
  reweightCarry: boolean;
}

export interface ModelEntry {
  /** "default" for the bundled model; else the path under --models, without .safetensors. */
  name: string;
  path: string;
  format: 'diffusers' | 'single-file';
  /** A single file's original config, `NAME.yaml` beside `NAME.safetensors` (A1111's convention). */
  config?: string;
}

export interface NamedFile {
  /** The file name without .safetensors, as A1111 names LoRAs and embeddings. */
  name: string;
  path: string;
}

export const LORA_FOLDER = 'loras';
export const EMBEDDING_FOLDER = 'embeddings';
export const CONTROLNET_FOLDER = 'controlnet';
export const VAE_FOLDER = 'vae';
export const DEFAULT_MODEL = 'default';

/** Thrown for a name the registry does not know; the HTTP layer answers 400 naming `field`. */
export class UnknownNameError extends Error {
  constructor(
    readonly field: string,
    readonly kind: string,
    readonly unknown: string,
    known: string[],
  ) {
    super(`no ${kind} named ${JSON.stringify(unknown)} (known: ${known.slice(0, 20).join(', ') || 'none'})`);
  }
}

export class ModelRegistry {
  /** The tokenizer single-file checkpoints fall back to (they carry none). */
  readonly defaultTokenizer = bundledTokenizer;

  constructor(
    /** The --models folder; absent: only the bundled model. */
    readonly dir?: string,
    private readonly defaultPath: string = defaultModelPath(),
  ) {}

  models(): ModelEntry[] {
    const found: ModelEntry[] = [{ name: DEFAULT_MODEL, path: this.defaultPath, format: 'diffusers' }];
    const add = (entry: ModelEntry) => found.some((m) => m.name === entry.name) || found.push(entry);
    this.scanCheckpoints({
      folder: (name, path) => add({ name, path, format: 'diffusers' }),
      file: (name, path) => {
        if (isVaeBesideCheckpoints(path)) return;
        const config = path.replace(/\.safetensors$/i, '.yaml');
        add({ name: name.replace(/\.safetensors$/i, ''), path, format: 'single-file', ...(existsSync(config) ? { config } : {}) });
      },
    });
    return found;
  }

  /**
   * What a job that names no size, steps or guidance gets from a model: the image side it was trained
   * for, and its own sampler's steps and guidance (`samplerDefaults`, with its folder's nuri.json).
   * Read from its configs once per file version; undefined when they cannot be read.
   */
  defaults(entry: ModelEntry): ModelRunDefaults | undefined {
    const key = `${entry.path}@${statSync(entry.path).mtimeMs}`;
    if (!this.runDefaults.has(key)) {
      let found: ModelRunDefaults | undefined;
      try {
        const sd = StableDiffusion.load(entry.path, this.loadOptions(entry));
        found = { size: sd.defaultSize, ...samplerDefaults(sd, {}), reweightCarry: carriesReweightsByDefault(sd) };
      } catch {
        found = undefined; // a broken model is reported when a job loads it, not in the listing
      }
      this.runDefaults.set(key, found);
    }
    return this.runDefaults.get(key);
  }

  private readonly runDefaults = new Map<string, ModelRunDefaults | undefined>();

  /** What loading a model of the registry needs beside its path: the fallback tokenizer, its YAML. */
  loadOptions(entry: ModelEntry): { defaultTokenizer: string; config?: string } {
    return { defaultTokenizer: this.defaultTokenizer, ...(entry.config ? { config: entry.config } : {}) };
  }

  /** The word a prompt uses for an embedding (read from the file's header); undefined for a broken file. */
  embeddingToken(file: NamedFile): string | undefined {
    try {
      return embeddingFileToken(file.path);
    } catch {
      return undefined; // reported when a job loads it
    }
  }

  loras(): NamedFile[] {
    return this.files(LORA_FOLDER);
  }

  embeddings(): NamedFile[] {
    return this.files(EMBEDDING_FOLDER);
  }

  /** ControlNets: single .safetensors files and diffusers folders (a config.json beside the weights). */
  controlnets(): NamedFile[] {
    return this.files(CONTROLNET_FOLDER, true);
  }

  /**
   * VAEs a job may decode with instead of its model's (the CLI's --vae): AutoencoderKL .safetensors
   * files, and AutoencoderKL or AutoencoderTiny (TAESD) folders (a config.json beside the weights),
   * in DIR/vae; then the `NAME.vae.safetensors` files among the checkpoints (named "NAME.vae").
   */
  vaes(): NamedFile[] {
    const found = this.files(VAE_FOLDER, true);
    this.scanCheckpoints({
      file: (_, path) => {
        const name = basename(path).replace(/\.safetensors$/i, '');
        if (isVaeBesideCheckpoints(path) && !found.some((f) => f.name === name)) found.push({ name, path });
      },
    });
    return found;
  }

  vae(name: string, field = 'vae'): NamedFile {
    return this.named(this.vaes(), name, field, 'VAE');
  }

  controlnet(name: string, field = 'controlnet'): NamedFile {
    return this.named(this.controlnets(), name, field, 'ControlNet');
  }

  model(name: string, field = 'model'): ModelEntry {
    const all = this.models();
    const found = all.find((m) => m.name === name);
    if (!found) throw new UnknownNameError(field, 'model', name, all.map((m) => m.name));
    return found;
  }

  lora(name: string, field = 'loras'): NamedFile {
    return this.named(this.loras(), name, field, 'LoRA');
  }

  embedding(name: string, field = 'embeddings'): NamedFile {
    return this.named(this.embeddings(), name, field, 'embedding');
  }

  private named(list: NamedFile[], name: string, field: string, kind: string): NamedFile {
    const found = list.find((f) => f.name === name);
    if (!found) throw new UnknownNameError(field, kind, name, list.map((f) => f.name));
    return found;
  }

  /**
   * Walks the checkpoints under --models (in name order, skipping the LoRA, embedding, ControlNet
   * and VAE folders): a diffusers pipeline folder (model_index.json) is one entry, other folders
   * are walked, and .safetensors files are visited. `name` is the path under --models.
   */
  private scanCheckpoints(visit: { folder?: (name: string, path: string) => unknown; file: (name: string, path: string) => unknown }): void {
    const walk = (dir: string, top: boolean) => {
      for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
        if (entry.name.startsWith('.')) continue;
        const path = join(dir, entry.name);
        const name = relative(this.dir!, path).split('\\').join('/');
        if (isFolder(entry, path)) {
          if (top && [LORA_FOLDER, EMBEDDING_FOLDER, CONTROLNET_FOLDER, VAE_FOLDER].includes(entry.name)) continue;
          if (existsSync(join(path, 'model_index.json'))) visit.folder?.(name, path);
          else walk(path, false);
        } else if (entry.name.toLowerCase().endsWith('.safetensors')) {
          visit.file(name, path);
        }
      }
    };
    if (this.dir && existsSync(this.dir)) walk(this.dir, true);
  }

  /** The .safetensors under DIR/folder by file name; with `modelFolders`, a folder with a config.json is one entry. */
  private files(folder: string, modelFolders = false): NamedFile[] {
    const dir = this.dir && join(this.dir, folder);
    if (!dir || !existsSync(dir) || !statSync(dir).isDirectory()) return [];
    const out: NamedFile[] = [];
    const walk = (d: string) => {
      for (const entry of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
        if (entry.name.startsWith('.')) continue;
        const path = join(d, entry.name);
        const add = (name: string) => out.some((f) => f.name === name) || out.push({ name, path });
        if (isFolder(entry, path)) {
          if (modelFolders && existsSync(join(path, 'config.json'))) add(entry.name);
          else walk(path);
        } else if (entry.name.toLowerCase().endsWith('.safetensors')) {
          add(basename(entry.name).replace(/\.safetensors$/i, ''));
        }
      }
    };
    walk(dir);
    return out;
  }
}

/** A1111's convention for a checkpoint's own VAE: `NAME.vae.safetensors` beside `NAME.safetensors`. */
function isVaeBesideCheckpoints(path: string): boolean {
  return path.toLowerCase().endsWith('.vae.safetensors');
}

/** A folder, or a link to one (models are often linked in from elsewhere). */
function isFolder(entry: Dirent, path: string): boolean {
  if (entry.isDirectory()) return true;
  return entry.isSymbolicLink() && statSync(path, { throwIfNoEntry: false })?.isDirectory() === true;
}
