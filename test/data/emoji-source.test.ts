import { describe, expect, it } from 'vitest';
import { isEmojiSource, parseEmojiSource } from '../../src/data/emoji-source.ts';

describe('emoji source on the command line', () => {
  it('tells the emoji set from a folder', () => {
    expect(isEmojiSource('emoji')).toBe(true);
    expect(isEmojiSource('emoji:styles=noto')).toBe(true);
    expect(isEmojiSource('emojis')).toBe(false);
    expect(isEmojiSource('./emoji')).toBe(false);
  });

  it('reads the settings', () => {
    expect(parseEmojiSource('emoji')).toEqual({});
    expect(parseEmojiSource('emoji:styles=twemoji+noto,skin-tones=no,style-word=never,split=heldout')).toEqual({
      styles: ['twemoji', 'noto'],
      includeSkinTones: false,
      styleWord: 'never',
      split: 'heldout',
    });
  });

  it('names what is wrong', () => {
    expect(() => parseEmojiSource('emoji:styles=apple')).toThrow(/styles=apple; expected one of twemoji, noto/);
    expect(() => parseEmojiSource('emoji:size=32')).toThrow(/unknown setting "size"/);
    expect(() => parseEmojiSource('emoji:skin-tones')).toThrow(/not key=value/);
  });
});
