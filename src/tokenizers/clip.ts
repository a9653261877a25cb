// CLIP's byte-level BPE tokenizer (vocab.json + merges.txt), as Stable Diffusion pipelines use it.
//
// It reproduces Hugging Face's slow CLIPTokenizer in the usual install, where the optional ftfy
// package is absent and text first goes through BERT's BasicTokenizer: control characters dropped,
// whitespace unified, CJK ideographs split out, lower-cased, accents stripped (NFD minus
// non-spacing marks: café → cafe), punctuation split into single characters (don't → don ' t).
// CLIP's regex then cuts each word into pre-tokens; each pre-token's UTF-8 bytes are mapped to
// printable characters and merged by BPE rank, the last character carrying the end-of-word `</w>`.
//
// Special-token strings and added tokens (Textual Inversion placeholders such as `<cat-toy>`) are
// cut out of the raw text before any of that and map straight to their ids, as Hugging Face's
// added-token split does. Like Hugging Face, every special token is cut out, pad included: with
// SD-2's pad token "!", a typed "!" becomes id 0, not "!</w>".

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WHITESPACE, WORD_SEPARATOR, promptWords } from './words.ts';

const END_OF_WORD = '</w>';
// Hugging Face's slow CLIPTokenizer reads only this many merges from merges.txt.
const MAX_MERGES = 49152 - 256 - 2;
// A long-running server sees unbounded distinct words; the BPE cache is cleared past this size.
const MAX_CACHE_ENTRIES = 100_000;

// BasicTokenizer's character classes, as regexes over single code points.
const DROPPED = /\0|\uFFFD|(?![\t\n\r])\p{C}/gu;
const CJK_IDEOGRAPH =
  /[\u{4E00}-\u{9FFF}\u{3400}-\u{4DBF}\u{20000}-\u{2A6DF}\u{2A700}-\u{2B73F}\u{2B740}-\u{2B81F}\u{2B820}-\u{2CEAF}\u{F900}-\u{FAFF}\u{2F800}-\u{2FA1F}]/gu;
const NON_SPACING_MARK = /\p{Mn}/gu;
// Unicode punctuation plus every ASCII non-alphanumeric symbol ($, +, <, =, >, ^, `, |, ~).
const PUNCTUATION_SPLIT = /([!-/:-@[-`{-~]|\p{P})/u;
// CLIP's pre-tokenizer pattern (openai/CLIP simple_tokenizer.py), case-insensitive.
const PRE_TOKEN =
  /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/giu;

export type WarningHandler = (message: string) => void;

export interface ClipTokenizerConfig {
  /** BPE token string → id (vocab.json), special tokens included. */
  vocab: Record<string, number>;
  /** Merges in rank order, each "first second" (merges.txt without its `#version` header). */
  merges: string[];
  bosToken?: string;
  eosToken?: string;
  unkToken?: string;
  padToken?: string;
  modelMaxLength?: number;
  /** Tokens added after training (added_tokens.json): matched whole, before BPE. */
  addedTokens?: Record<string, number>;
  /** Receives truncation warnings; `console.warn` when not given. */
  onWarning?: WarningHandler;
  /** Where `vocab` and `addedTokens` were read from, for error messages. */
  source?: { vocab?: string; addedTokens?: string };
}

/** Ids go into Int32Array rows: a larger one would wrap to another (or a negative) row. */
const MAX_TOKEN_ID = 2 ** 31 - 1;

export interface ClipCallOptions {
  /** Padded sequence length: BOS + up to maxLength − 2 tokens + EOS + padding. */
  maxLength?: number;
  onWarning?: WarningHandler;
}

export interface ClipBatch {
  /** One row of `maxLength` ids per prompt. */
  inputIds: Int32Array[];
  /** Whether the prompt had more tokens than fit and lost its tail. */
  truncated: boolean[];
}

export { promptWords };

export class ClipTokenizer {
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly unkTokenId: number;
  readonly modelMaxLength: number;

  private readonly vocab: Map<string, number>;
  private readonly idToToken: string[] = [];
  private readonly mergeRanks = new Map<string, number>();
  private readonly byteEncoder: string[] = bytesToUnicode();
  private readonly byteDecoder = new Map<string, number>();
  /** Special-token strings and added tokens, matched in raw text before BPE. */
  private readonly wholeTokens = new Map<string, number>();
  private wholeTokenPattern: RegExp | undefined;
  private readonly cache = new Map<string, string[]>();
  private readonly onWarning: WarningHandler;

  constructor(config: ClipTokenizerConfig) {
    this.vocab = new Map();
    checkIdMap(config.vocab, config.source?.vocab ?? 'vocab');
    if (config.addedTokens !== undefined) checkIdMap(config.addedTokens, config.source?.addedTokens ?? 'added tokens');
    for (const token in config.vocab) {
      const id = config.vocab[token]!;
      this.vocab.set(token, id);
      this.idToToken[id] = token;
    }
    // A merge listed twice keeps its later rank, as Hugging Face's dict(zip(merges, ranks)) does.
    const mergeCount = Math.min(config.merges.length, MAX_MERGES);
    for (let rank = 0; rank < mergeCount; rank++) this.mergeRanks.set(config.merges[rank]!, rank);
    this.byteEncoder.forEach((char, byte) => this.byteDecoder.set(char, byte));

    for (const [token, id] of Object.entries(config.addedTokens ?? {})) {
      if (!this.vocab.has(token)) this.idToToken[id] = token;
      this.wholeTokens.set(token, id);
    }
    const idOf = (token: string, role: string): number => {
      const id = this.vocab.get(token) ?? this.wholeTokens.get(token);
      if (id === undefined) throw new Error(`ClipTokenizer: ${role} token ${JSON.stringify(token)} is not in the vocabulary`);
      this.wholeTokens.set(token, id);
      return id;
    };
    this.bosTokenId = idOf(config.bosToken ?? '<|startoftext|>', 'BOS');
    this.eosTokenId = idOf(config.eosToken ?? '<|endoftext|>', 'EOS');
    this.unkTokenId = idOf(config.unkToken ?? '<|endoftext|>', 'unknown');
    this.padTokenId = idOf(config.padToken ?? '<|endoftext|>', 'pad');
    this.modelMaxLength = config.modelMaxLength ?? 77;
    this.onWarning = config.onWarning ?? ((message) => console.warn(`warning: ${message}`));
    this.compileWholeTokens();
  }

  /**
   * Loads a diffusers `tokenizer/` folder: vocab.json and merges.txt, plus, where present,
   * special_tokens_map.json / tokenizer_config.json (special tokens, model_max_length) and
   * added_tokens.json.
   */
  static fromFolder(dir: string, options: { onWarning?: WarningHandler; padToken?: string } = {}): ClipTokenizer {
    const vocabPath = join(dir, 'vocab.json');
    const vocab = readJson(vocabPath, true);
    checkIdMap(vocab, vocabPath);
    const merges = parseMerges(join(dir, 'merges.txt'));
    const config = readJsonObject(join(dir, 'tokenizer_config.json'));
    const specialMap = readJsonObject(join(dir, 'special_tokens_map.json'));
    const addedPath = join(dir, 'added_tokens.json');
    const added = readJson(addedPath, false) as Record<string, number> | undefined;
    const special = (key: string): string | undefined =>
      tokenContent(specialMap[key], join(dir, 'special_tokens_map.json'), key) ??
      tokenContent(config[key], join(dir, 'tokenizer_config.json'), key);
    const maxLength = config.model_max_length;
    return new ClipTokenizer({
      vocab,
      merges,
      bosToken: special('bos_token'),
      eosToken: special('eos_token'),
      unkToken: special('unk_token'),
      padToken: special('pad_token'),
      // Tokenizers saved without a limit store a huge sentinel; CLIP's position table holds 77.
      modelMaxLength:
        typeof maxLength === 'number' && Number.isInteger(maxLength) && maxLength >= 2 && maxLength <= 1 << 20
          ? maxLength
          : undefined,
      addedTokens: added,
      onWarning: options.onWarning,
      source: { vocab: vocabPath, addedTokens: addedPath },
      ...(options.padToken !== undefined ? { padToken: options.padToken } : {}),
    });
  }

  /** Number of ids, added tokens included: the text encoder's embedding table needs this many rows. */
  get size(): number {
    return this.idToToken.length;
  }

  /** BPE token strings of a prompt (`</w>` marks a word's last token), without BOS/EOS. */
  tokenize(text: string): string[] {
    return this.split(text).tokens;
  }

  /** Token ids of a prompt, without BOS/EOS and without truncation. */
  encode(text: string): number[] {
    return this.encodeWithWordStarts(text).ids;
  }

  /** `encode` with, per id, whether it begins a word (a pre-token or whole token): for word lookups. */
  encodeWithWordStarts(text: string): { ids: number[]; wordStarts: boolean[] } {
    const { tokens, wordStarts } = this.split(text);
    return { ids: tokens.map((token) => this.vocab.get(token) ?? this.wholeTokens.get(token) ?? this.unkTokenId), wordStarts };
  }

  /** Ids back to text: words separated by single spaces (normalisation is not undone). */
  decode(ids: Iterable<number>): string {
    const bytes: number[] = [];
    const encoder = new TextEncoder();
    for (const id of ids) {
      const token = this.idToToken[id];
      if (token === undefined) continue;
      if (!this.vocab.has(token)) {
        bytes.push(...encoder.encode(` ${token} `));
        continue;
      }
      for (const char of token) {
        const byte = this.byteDecoder.get(char);
        if (byte === undefined) bytes.push(...encoder.encode(char));
        else bytes.push(byte);
      }
    }
    const text = new TextDecoder().decode(new Uint8Array(bytes));
    return text.replaceAll(END_OF_WORD, ' ').split(/ +/).filter((word) => word !== '').join(' ');
  }

  /**
   * Padded model input for a batch of prompts: BOS, the prompt's first maxLength − 2 tokens, EOS,
   * then the pad token up to maxLength. Longer prompts are truncated with a warning.
   */
  call(prompts: string[], options: ClipCallOptions = {}): ClipBatch {
    const maxLength = options.maxLength ?? this.modelMaxLength;
    const warn = options.onWarning ?? this.onWarning;
    if (!Number.isInteger(maxLength) || maxLength < 2) {
      throw new RangeError(`ClipTokenizer: maxLength must be an integer ≥ 2 (room for BOS and EOS), got ${maxLength}`);
    }
    const room = maxLength - 2;
    const inputIds: Int32Array[] = [];
    const truncated: boolean[] = [];
    for (const prompt of prompts) {
      const ids = this.encode(prompt);
      const kept = ids.slice(0, room);
      const row = new Int32Array(maxLength).fill(this.padTokenId);
      row[0] = this.bosTokenId;
      row.set(kept, 1);
      row[1 + kept.length] = this.eosTokenId;
      inputIds.push(row);
      truncated.push(ids.length > room);
      if (ids.length > room) {
        warn(`prompt truncated to ${maxLength} tokens: dropped ${droppedText(this.decode(ids.slice(room)), ids.length - room)}`);
      }
    }
    return { inputIds, truncated };
  }

  /**
   * Positions in the padded sequence (BOS at 0) of the tokens that spell `word` in `prompt`:
   * a string is looked up by its tokens at word boundaries, every occurrence (so "Cat," finds
   * "cat", and multi-word phrases work); a number is the index of a word in `promptWords(prompt)`,
   * the form Prompt-to-Prompt's word alignment uses. Positions truncated away are left out.
   */
  wordTokenIndices(prompt: string, word: string | number, maxLength = this.modelMaxLength): number[] {
    const positions: number[] = [];
    if (typeof word === 'number') {
      const words = promptWords(prompt);
      if (!Number.isInteger(word) || word < 0 || word >= words.length) {
        throw new RangeError(`ClipTokenizer: word index ${word} is outside the prompt's ${words.length} words`);
      }
      let start = 1;
      for (let i = 0; i < word; i++) start += this.tokenize(words[i]!).length;
      const count = this.tokenize(words[word]!).length;
      for (let p = start; p < start + count; p++) positions.push(p);
    } else {
      const target = this.tokenize(word);
      const { tokens, wordStarts } = this.split(prompt);
      const n = target.length;
      for (let i = 0; n > 0 && i + n <= tokens.length; i++) {
        if (!wordStarts[i] || (i + n < tokens.length && !wordStarts[i + n])) continue;
        if (target.every((token, k) => tokens[i + k] === token)) {
          for (let k = 0; k < n; k++) positions.push(i + k + 1);
        }
      }
    }
    return positions.filter((p) => p < maxLength - 1);
  }

  /**
   * Adds a whole token that BPE never splits (a Textual Inversion placeholder) and returns its id,
   * the next free one. Adding a token that is already added or special returns its id; a string
   * that BPE can already produce is refused, since prompts would never reach the new id.
   */
  /** Throws unless `token` can be added as a new word: not empty, not added already, not a vocabulary word. */
  checkNewToken(token: string): void {
    if (token.trim() === '') throw new Error('ClipTokenizer: cannot add an empty token');
    const added = this.wholeTokens.get(token);
    if (added !== undefined) throw new Error(`ClipTokenizer: ${JSON.stringify(token)} was already added (id ${added})`);
    // Prompts are lower-cased before BPE, so "Cat" would take over the ordinary word "cat" typed
    // with a capital: compare with the vocabulary as the tokenizer will see the word.
    const lower = token.toLowerCase();
    const vocabId = this.vocab.get(token) ?? this.vocab.get(lower) ?? this.vocab.get(lower + END_OF_WORD);
    if (vocabId !== undefined) {
      throw new Error(`ClipTokenizer: ${JSON.stringify(token)} is already in the vocabulary (id ${vocabId}); choose another token (prompts are lower-cased, so case does not make a new word)`);
    }
  }

  addToken(token: string): number {
    const existing = this.wholeTokens.get(token);
    if (existing !== undefined) return existing;
    this.checkNewToken(token);
    const id = this.idToToken.length;
    this.idToToken[id] = token;
    this.wholeTokens.set(token, id);
    this.compileWholeTokens();
    return id;
  }

  /** BPE tokens of `text` and, per token, whether it begins a word (a pre-token or whole token). */
  private split(text: string): { tokens: string[]; wordStarts: boolean[] } {
    const tokens: string[] = [];
    const wordStarts: boolean[] = [];
    const addSegment = (segment: string): void => {
      for (const word of basicTokenize(segment)) {
        for (const [preToken] of word.matchAll(PRE_TOKEN)) {
          const pieces = this.bpe(preToken);
          pieces.forEach((piece, k) => {
            tokens.push(piece);
            wordStarts.push(k === 0);
          });
        }
      }
    };
    let last = 0;
    if (this.wholeTokenPattern) {
      for (const match of text.matchAll(this.wholeTokenPattern)) {
        addSegment(text.slice(last, match.index));
        tokens.push(match[0]);
        wordStarts.push(true);
        last = match.index + match[0].length;
      }
    }
    addSegment(text.slice(last));
    return { tokens, wordStarts };
  }

  /** BPE of one pre-token: its UTF-8 bytes as printable characters, merged by rank. */
  private bpe(preToken: string): string[] {
    const cached = this.cache.get(preToken);
    if (cached) return cached;
    let word: string[] = [];
    for (const byte of new TextEncoder().encode(preToken)) word.push(this.byteEncoder[byte]!);
    word[word.length - 1] += END_OF_WORD;
    while (word.length > 1) {
      let best: string | undefined;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < word.length; i++) {
        const rank = this.mergeRanks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = `${word[i]} ${word[i + 1]}`;
        }
      }
      if (best === undefined) break;
      const merged: string[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i + 1 < word.length && `${word[i]} ${word[i + 1]}` === best) {
          merged.push(word[i]! + word[i + 1]!);
          i++;
        } else {
          merged.push(word[i]!);
        }
      }
      word = merged;
    }
    if (this.cache.size >= MAX_CACHE_ENTRIES) this.cache.clear();
    this.cache.set(preToken, word);
    return word;
  }

  private compileWholeTokens(): void {
    // Longest first, so that at any position the longest whole token wins.
    const alternatives = [...this.wholeTokens.keys()]
      .sort((a, b) => b.length - a.length)
      .map((token) => token.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
    this.wholeTokenPattern = alternatives.length > 0 ? new RegExp(alternatives.join('|'), 'gu') : undefined;
  }
}

/** BERT's BasicTokenizer (lower-casing, accent stripping, CJK and punctuation splitting): words. */
function basicTokenize(text: string): string[] {
  const cleaned = text.replace(DROPPED, '').replace(WHITESPACE, ' ').replace(CJK_IDEOGRAPH, ' $& ');
  const words: string[] = [];
  for (const word of cleaned.split(WORD_SEPARATOR)) {
    const folded = word.toLowerCase().normalize('NFD').replace(NON_SPACING_MARK, '');
    for (const piece of folded.split(PUNCTUATION_SPLIT)) if (piece !== '') words.push(piece);
  }
  return words;
}

/**
 * GPT-2's reversible byte → character table: printable Latin-1 bytes stand for themselves, the
 * other 68 bytes for the code points from 256 up, so every token is printable text.
 */
function bytesToUnicode(): string[] {
  const table: string[] = [];
  let next = 256;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
    table.push(String.fromCodePoint(printable ? byte : next++));
  }
  return table;
}

/** merges.txt as "first second" lines in rank order, its `#version` header skipped. */
function parseMerges(path: string): string[] {
  const lines = readText(path, true)!.split('\n');
  const merges: string[] = [];
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!.trim();
    if (line === '' || (index === 0 && line.startsWith('#'))) continue;
    const space = line.indexOf(' ');
    if (space <= 0 || line.indexOf(' ', space + 1) !== -1) {
      throw new Error(`ClipTokenizer: ${path} line ${index + 1} is not a merge pair: ${JSON.stringify(lines[index])}`);
    }
    merges.push(line);
  }
  return merges;
}

function readText(path: string, required: boolean): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (!required && code === 'ENOENT') return undefined;
    throw new Error(`ClipTokenizer: cannot read ${path} (${code ?? (error as Error).message})`);
  }
}

function readJson(path: string, required: boolean): unknown {
  const text = readText(path, required);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`ClipTokenizer: ${path} is not valid JSON: ${(error as Error).message}`);
  }
}

function readJsonObject(path: string): Record<string, unknown> {
  const value = readJson(path, false);
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`ClipTokenizer: ${path} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** Every entry a non-empty token string with an integer id that fits an Int32Array row; the error names the word. */
function checkIdMap(value: unknown, source: string): asserts value is Record<string, number> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`ClipTokenizer: ${source} must map token strings to integer ids, got ${value === null ? 'null' : Array.isArray(value) ? 'a list' : typeof value}`);
  }
  const map = value as Record<string, unknown>;
  for (const token in map) {
    const id = map[token];
    if (token.trim() === '') throw new Error(`ClipTokenizer: ${source} has an empty token ${JSON.stringify(token)} (id ${JSON.stringify(id)})`);
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) > MAX_TOKEN_ID) {
      throw new Error(`ClipTokenizer: ${source}: ${JSON.stringify(token)} has id ${JSON.stringify(id)}; ids must be integers from 0 to ${MAX_TOKEN_ID}`);
    }
  }
}

/** A special token as tokenizer files spell it: a string or an AddedToken object `{content}`. */
function tokenContent(value: unknown, path: string, key: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  throw new Error(`ClipTokenizer: ${path}: ${key} must be a string or an object with a string "content"`);
}

/** The dropped words quoted; of a long tail only the first few, and its length in tokens. */
function droppedText(text: string, tokens: number): string {
  const words = text.split(' ');
  if (words.length <= DROPPED_WORDS_SHOWN) return `'${text}'`;
  return `${tokens} tokens, '${words.slice(0, DROPPED_WORDS_SHOWN).join(' ')} …'`;
}

const DROPPED_WORDS_SHOWN = 12;
