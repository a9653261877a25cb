// What kind of Prompt-to-Prompt edit the typed target makes, said before anything runs, and the
// edit job's params. Token counts are the server's to check (it has the tokenizer): a swap whose
// words split into different numbers of tokens is refused by the server with its reason.

import { promptWords } from '../tokenizers/words.ts';

export type EditKind =
  | { kind: 'reweight' }
  | { kind: 'replace'; swaps: [string, string][] }
  | { kind: 'refine'; added: string[]; removed: string[] }
  | { kind: 'empty' };

export function classifyEdit(source: string, target: string): EditKind {
  const [a, b] = [promptWords(source), promptWords(target)];
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
  localBlend: string[];
}

/** The edit job's params: the edit's own settings over the source's sampling settings. */
export function editParams(settings: EditSettings, sampling: Record<string, unknown>): Record<string, unknown> {
  const edit = classifyEdit(settings.prompt, settings.target);
  const targetWords = new Set(promptWords(settings.target));
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
  if (settings.localBlend.length > 0) params.localBlend = settings.localBlend;
  return params;
}
