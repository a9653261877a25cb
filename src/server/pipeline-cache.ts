// Loaded pipelines kept between jobs, so the second job on a model does not pay the load (configs,
// graph tracing, ONNX Runtime sessions) again. A LoRA is merged into the weights and an embedding
// grows the vocabulary, so a pipeline is keyed by its model *and* its LoRA and embedding set.
// Least recently used pipelines beyond --max-loaded are evicted and their sessions freed.

import { existsSync } from 'node:fs';
import type { WeightDType } from '../engine/quantize.ts';
import { type Personalisation, type StableDiffusion, loadPipeline, personalise } from '../index.ts';
import type { ModelRegistry } from './models.ts';

export interface PipelineSpec {
  model: string;
  loras?: readonly { name: string; weight: number }[];
  embeddings?: readonly string[];
  /** Weights of the UNet and text encoder ('q8': int8); a q8 and an fp32 pipeline of one model are two entries. */
  dtype?: WeightDType;
  /** A VAE of the registry's vae/ in place of the model's own. */
  vae?: string;
}

export interface LoadedPipeline {
  sd: StableDiffusion;
  personal: Personalisation;
}

/** A pipeline held for one job: not evicted until `release()`. */
export type PipelineLease = LoadedPipeline & { release(): void };

interface Entry {
  key: string;
  model: string;
  pipeline: Promise<LoadedPipeline>;
  /** Jobs holding it now (a worker may run several at once). */
  users: number;
}

export class PipelineCache {
  /** Most recently used last. */
  private entries: Entry[] = [];

  constructor(
    readonly registry: ModelRegistry,
    readonly maxLoaded = 1,
    /** An AutoencoderTiny folder (TAESD) for the step previews of every model it fits (--preview-vae). */
    readonly previewVae?: string,
  ) {
    if (!Number.isInteger(maxLoaded) || maxLoaded < 1) throw new Error(`--max-loaded must be a positive integer, got ${maxLoaded}`);
    if (previewVae !== undefined && !existsSync(previewVae)) throw new Error(`--preview-vae: no such folder ${previewVae}`);
  }

  /** Names of the models loaded now, least recently used first. */
  loaded(): string[] {
    return this.entries.map((e) => e.key);
  }

  /**
   * The pipeline for `spec`, loaded (and personalised) on first use, held until the lease is
   * released. Unknown names throw UnknownNameError.
   */
  async acquire(spec: PipelineSpec): Promise<PipelineLease> {
    const key = cacheKey(spec);
    let entry = this.entries.find((e) => e.key === key);
    if (entry) this.entries = [...this.entries.filter((e) => e !== entry), entry];
    else {
      // Resolve every name before evicting anything, so a typo costs nothing.
      const model = this.registry.model(spec.model);
      const loras = (spec.loras ?? []).map(({ name, weight }) => ({ path: this.registry.lora(name).path, weight }));
      const embeddings = (spec.embeddings ?? []).map((name) => this.registry.embedding(name).path);
      const vae = spec.vae === undefined ? undefined : this.registry.vae(spec.vae).path;
      await this.trim(this.maxLoaded - 1);
      // Another acquire of the same spec may have added it while trim awaited: share that load.
      entry = this.entries.find((e) => e.key === key);
      if (!entry) {
        const pipeline = (async () => {
          const sd = await loadPipeline(model.path, { ...this.registry.loadOptions(model), releaseSessions: false, dtype: spec.dtype, vae,
            // A job's own VAE draws its previews too when it is tiny; the server's --preview-vae is for the others.
            previewVae: vae === undefined ? this.previewVae : undefined });
          const personal = await personalise(sd.components, { loras, embeddings });
          return { sd, personal };
        })();
        const added: Entry = { key, model: spec.model, pipeline, users: 0 };
        pipeline.catch(() => (this.entries = this.entries.filter((e) => e !== added)));
        this.entries.push(added);
        entry = added;
      }
    }
    const held = entry;
    held.users++;
    try {
      const loaded = await held.pipeline;
      let released = false;
      return {
        ...loaded,
        release: () => {
          if (released) return;
          released = true;
          held.users--;
          void this.trim(this.maxLoaded);
        },
      };
    } catch (error) {
      held.users--;
      throw error;
    }
  }

  /**
   * Evicts least recently used pipelines until at most `keep` are loaded, skipping those a job
   * holds now (the cache then stays over its bound until they are released).
   */
  private async trim(keep: number): Promise<void> {
    while (this.entries.length > keep) {
      const victim = this.entries.find((e) => e.users === 0);
      if (!victim) return;
      await this.evict(victim);
    }
  }

  /** Frees every loaded pipeline. */
  async clear(): Promise<void> {
    await this.trim(0);
  }

  /** Frees one pipeline's sessions (a session it shares with another pipeline lives on in that one). */
  private async evict(victim: Entry): Promise<void> {
    this.entries = this.entries.filter((e) => e !== victim);
    const loaded = await victim.pipeline.catch(() => undefined);
    if (loaded) await releasePipeline(loaded);
  }
}

/** Frees a pipeline's sessions: UNet, text encoder (per clip skip used), VAE. */
export async function releasePipeline({ sd }: Pick<LoadedPipeline, 'sd'>): Promise<void> {
  await sd.releaseUNet();
  await sd.releaseTextEncoder();
  await sd.releaseVae();
}

function cacheKey(spec: PipelineSpec): string {
  const loras = [...(spec.loras ?? [])].map((l) => `${l.name}:${l.weight}`).sort();
  const embeddings = [...(spec.embeddings ?? [])].sort();
  return JSON.stringify([spec.model, loras, embeddings, spec.dtype ?? 'fp32', spec.vae ?? null]);
}
