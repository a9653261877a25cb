// AUTOMATIC1111's emphasis syntax, as its `parse_prompt_attention` and diffusers' long-prompt-
// weighting community pipeline (lpw_stable_diffusion.py) read it:
//
//   (word)      × 1.1          ((word)) × 1.21 (nesting multiplies, as repeated float products)
//   [word]      ÷ 1.1          (word:1.3) × 1.3 (the number must follow the colon at once)
//   \( \) \[ \]  literal brackets;  BREAK  ends the current 75-token chunk (A1111)
//
// Unbalanced brackets close at the end of the prompt; adjacent runs of equal weight merge. The
// fragments are tokenized one by one, every token taking its fragment's weight. No Node APIs: the
// Studio page can show the same parse.

import { promptWords } from './words.ts';

/** A run of prompt text with its emphasis, or a BREAK. */
export type PromptFragment = { text: string; weight: number } | { break: true };

// The tokens of the syntax, tried in this order at each position (lpw's regex).
const ATTENTION = /\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:([+-]?[.\d]+)\)|\)|\]|[^\\()[\]:]+|:/gu;
// A1111 cuts plain text at the word BREAK, eating the whitespace around it.
const BREAK = /\s*\bBREAK\b\s*/u;

const ROUND = 1.1;
const SQUARE = 1 / 1.1;

/** The weighted fragments of a prompt; a prompt with no syntax gives [{ text: prompt, weight: 1 }]. */
export function parsePromptAttention(prompt: string): PromptFragment[] {
  const res: PromptFragment[] = [];
  const round: number[] = [];
  const square: number[] = [];
  const multiplyFrom = (start: number, factor: number): void => {
    for (let p = start; p < res.length; p++) {
      const fragment = res[p]!;
      if ('text' in fragment) fragment.weight *= factor;
    }
  };
  for (const match of prompt.matchAll(ATTENTION)) {
    const text = match[0];
    const weight = match[1] === undefined ? Number.NaN : Number(match[1]);
    if (text.startsWith('\\')) res.push({ text: text.slice(1), weight: 1 });
    else if (text === '(') round.push(res.length);
    else if (text === '[') square.push(res.length);
    // A weight that does not read as a number ("(x:1.2.3)") stays text (A1111 throws on it).
    else if (!Number.isNaN(weight) && round.length) multiplyFrom(round.pop()!, weight);
    else if (text === ')' && round.length) multiplyFrom(round.pop()!, ROUND);
    else if (text === ']' && square.length) multiplyFrom(square.pop()!, SQUARE);
    else {
      text.split(BREAK).forEach((part, i) => {
        if (i > 0) res.push({ break: true });
        res.push({ text: part, weight: 1 });
      });
    }
  }
  // Unclosed brackets close at the end: round ones first, each list in the order it opened (A1111).
  for (const start of round) multiplyFrom(start, ROUND);
  for (const start of square) multiplyFrom(start, SQUARE);
  if (!res.length) return [{ text: '', weight: 1 }];
  const merged: PromptFragment[] = [];
  for (const fragment of res) {
    const last = merged.at(-1);
    if (last && 'text' in last && 'text' in fragment && last.weight === fragment.weight) last.text += fragment.text;
    else merged.push(fragment);
  }
  return merged;
}

/** Whether the syntax changes anything in this prompt (no: it parses to itself at weight 1). */
export function hasPromptSyntax(prompt: string): boolean {
  const parsed = parsePromptAttention(prompt);
  const only = parsed[0]!;
  return parsed.length !== 1 || !('text' in only) || only.weight !== 1 || only.text !== prompt;
}

/** The words of a prompt as edits name them: those of its plain text (`a (cat:1.3)` → a, cat). */
export function plainPromptWords(prompt: string): string[] {
  return promptWords(plainPromptText(prompt));
}

/** The prompt as its words read without the syntax: the text of its fragments, a BREAK as a space. */
export function plainPromptText(prompt: string): string {
  return parsePromptAttention(prompt)
    .map((f) => ('text' in f ? f.text : ' '))
    .join('');
}
