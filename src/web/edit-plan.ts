// What kind of Prompt-to-Prompt edit the typed target makes, said before anything runs, and the
// edit job's params. Token counts are the server's to check (it has the tokenizer): a swap whose
// words split into different numbers of tokens is refused by the server with its reason.

import { type Job, imageName } from './api.ts';
import { jobSeed } from './generate-settings.ts';
import { plainPromptWords } from '../tokenizers/prompt-syntax.ts';

export type EditKind =
  | { kind: 'reweight' }
  | { kind: 'replace'; swaps: [string, string][] }
  | { kind: 'refine'; added: string[]; removed: string[] }
  | { kind: 'empty' };

export function classifyEdit(source: string, target: string): EditKind {
  const [a, b] = [plainPromptWords(source), plainPromptWords(target)];
  if (a.length === 0 || b.length === 0) return { kind: 'empty' };
  if (a.join(' ') === b.join(' ')) return { kind: 'reweight' };
  if (a.length === b.length) return { kind: 'replace', swaps: a.flatMap((w, i) => (w !== b[i] ? [[w, b[i]] as [string, string]] : [])) };
  return { kind: 'refine', added: b.filter((w) => !a.includes(w)), removed: a.filter((w) => !b.includes(w)) };
}

export function describeEdit(edit: EditKind): string {
  switch (edit.kind) {
    case 'empty':
      return 'Type the source prompt and the edited prompt.';
    case 'reweight':
      return 'Re-weighting: the same words, with the weights set below.';
    case 'replace':
      return `Word swap: ${edit.swaps.map(([a, b]) => `${a} → ${b}`).join(', ')}.`;
    case 'refine': {
      const parts = [edit.added.length && `adds ${edit.added.join(' ')}`, edit.removed.length && `removes ${edit.removed.join(' ')}`].filter(Boolean);
      return `Refinement: ${parts.join('; ') || 'reorders words'}.`;
    }
  }
}

export interface EditSettings {
  prompt: string;
  target: string;
  crossReplace: number;
  selfReplace: number;
  /** Word of the target → weight; 1 leaves it unchanged. */
  reweight: Record<string, number>;
  /** Carry the weights into the words after them; undefined: the model's own setting. */
  reweightCarry?: boolean;
  localBlend: string[];
}

/** The edit job's params: the edit's own settings over the source's sampling settings. */
export function editParams(settings: EditSettings, sampling: Record<string, unknown>): Record<string, unknown> {
  const edit = classifyEdit(settings.prompt, settings.target);
  const targetWords = new Set(plainPromptWords(settings.target));
  const reweight = Object.fromEntries(Object.entries(settings.reweight).filter(([w, f]) => f !== 1 && targetWords.has(w)));
  const params: Record<string, unknown> = {
    ...sampling,
    prompt: settings.prompt,
    target: settings.target,
    refine: edit.kind === 'refine',
    crossReplace: settings.crossReplace,
    selfReplace: settings.selfReplace,
    attentionMaps: true,
  };
  if (Object.keys(reweight).length > 0) params.reweight = reweight;
  if (Object.keys(reweight).length > 0 && settings.reweightCarry !== undefined) params.reweightCarry = settings.reweightCarry;
  if (settings.localBlend.length > 0) params.localBlend = settings.localBlend;
  return params;
}

/** What an edit starts from: an earlier result (its job remakes it) or an uploaded photo. */
export type EditSource = { kind: 'result'; job: Job; url: string } | { kind: 'upload'; name: string; url: string; width: number; height: number };

export interface PhotoSampling {
  steps: number;
  guidance: number;
  nullTextSteps: number;
}

/**
 * How a picture is inverted until the user says otherwise: 20 DDIM steps and 10 null-text steps
 * (the optimisation runs at every step, so steps cost most here), at the model's own guidance when
 * it has one that guides (inversion needs classifier-free guidance, > 1), else SD's 7.5.
 */
export function photoSampling(model?: { defaultGuidance?: number }): PhotoSampling {
  const own = model?.defaultGuidance;
  return { steps: 20, guidance: own !== undefined && own > 1 ? own : 7.5, nullTextSteps: 10 };
}

/** The result's sampling settings remake its image as the edit's source; a photo is inverted instead. */
export function samplingOf(source: EditSource, photo: PhotoSampling): Record<string, unknown> {
  if (source.kind === 'upload') return { image: source.name, scheduler: 'ddim', ...photo };
  const p = source.job.params;
  const pick = (keys: string[]) => Object.fromEntries(keys.filter((k) => p[k] !== undefined && p[k] !== null).map((k) => [k, p[k]]));
  // An img2img result cannot be remade from its seed alone: it is edited as a picture, inverted.
  if (inverted(source)) return { ...pick(['model', 'loras', 'embeddings', 'clipSkip']), image: imageName(source.url), scheduler: 'ddim', ...photo };
  const sampling: Record<string, unknown> = pick(['model', 'negativePrompt', 'steps', 'scheduler', 'guidance', 'eta', 'width', 'height', 'clipSkip', 'loras', 'embeddings']);
  const seed = jobSeed(source.job);
  if (seed !== undefined) sampling.seed = seed;
  return sampling;
}

/** Whether the source is edited through its inversion: a photo, or a result made from another picture. */
export function inverted(source: EditSource | undefined): boolean {
  return source?.kind === 'upload' || (source?.kind === 'result' && source.job.params.initImage !== undefined);
}
