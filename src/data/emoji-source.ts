// The emoji set named on a command line, where an image folder would go:
//
//   emoji                                  both styles, skin tones, optional style word, train split
//   emoji:styles=twemoji,skin-tones=no     comma-separated settings (see parseEmojiSource)
//
// so that `nuri train … --images emoji:…` trains on the npm-installed emoji packages (docs/DATA.md)
// with every caption variant, without writing the images out as a folder first.
import { EMOJI_STYLES, type EmojiDatasetOptions, type EmojiStyle, type Split, type StyleWord } from './emoji.ts';

const PREFIX = 'emoji';

/** Whether an --images value names the emoji set rather than a folder. */
export function isEmojiSource(spec: string): boolean {
  return spec === PREFIX || spec.startsWith(`${PREFIX}:`);
}

function oneOf<T extends string>(key: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new Error(`emoji source: ${key}=${value}; expected one of ${allowed.join(', ')}`);
  return value as T;
}

function yesNo(key: string, value: string): boolean {
  return oneOf(key, value, ['yes', 'no'] as const) === 'yes';
}

/**
 * Settings, each `key=value`, comma-separated after `emoji:`:
 * `styles=twemoji+noto` (either or both), `skin-tones=yes|no`, `style-word=optional|always|never`,
 * `split=train|heldout`. The image size is the training resolution, given separately.
 */
export function parseEmojiSource(spec: string): EmojiDatasetOptions {
  if (!isEmojiSource(spec)) throw new Error(`not an emoji source: ${spec}`);
  const options: EmojiDatasetOptions = {};
  const body = spec.slice(PREFIX.length + 1);
  for (const setting of body ? body.split(',') : []) {
    const [key, value, extra] = setting.split('=');
    if (value === undefined || extra !== undefined) throw new Error(`emoji source: "${setting}" is not key=value`);
    if (key === 'styles') options.styles = value.split('+').map((s) => oneOf(key, s, EMOJI_STYLES)) as EmojiStyle[];
    else if (key === 'skin-tones') options.includeSkinTones = yesNo(key, value);
    else if (key === 'style-word') options.styleWord = oneOf<StyleWord>(key, value, ['optional', 'always', 'never']);
    else if (key === 'split') options.split = oneOf<Split>(key, value, ['train', 'heldout']);
    else throw new Error(`emoji source: unknown setting "${key}"; expected styles, skin-tones, style-word or split`);
  }
  return options;
}
