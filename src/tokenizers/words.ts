// How a prompt splits into words, as CLIP's BasicTokenizer splits it. No Node APIs: the Studio page
// names the same words (chips, re-weighting sliders, local-blend choices) that the server will.

export const WHITESPACE = /[\t\n\r\p{Zs}]/gu;
// Python's str.split() also splits at line and paragraph separators.
export const WORD_SEPARATOR = /[ \u2028\u2029]+/u;

/** The words of a prompt as `wordTokenIndices` numbers them: whitespace-separated, empties dropped. */
export function promptWords(prompt: string): string[] {
  return prompt.replace(WHITESPACE, ' ').split(WORD_SEPARATOR).filter((word) => word !== '');
}
