// `npx tsx bench/emoji-data.ts [cacheDir]`: the emoji training set in numbers — records per style
// and split, the tensor cache's cold (decode) and warm (load) times and file sizes at 64 and
// 32 px, and how often each colour-word caption's colour is the dominant colour of its real image.
import { rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COLOUR_WORDS, type ColourName, dominantColour } from '../src/data/colour.ts';
import { emojiCachePath, emojiTensorCache } from '../src/data/emoji-cache.ts';
import { EMOJI_STYLES, emojiRecords, readEmojiImage } from '../src/data/emoji.ts';

const cacheDir = process.argv[2] ?? join(tmpdir(), `nuri-emoji-bench-${process.pid}`);

console.log('records (includeSkinTones true / false):');
for (const split of ['train', 'heldout'] as const) {
  for (const style of EMOJI_STYLES) {
    const withTones = emojiRecords({ styles: [style], split }).length;
    const without = emojiRecords({ styles: [style], split, includeSkinTones: false }).length;
    console.log(`  ${split.padEnd(7)} ${style.padEnd(7)} ${withTones} / ${without}`);
  }
}
const names = (split: 'train' | 'heldout') => new Set(emojiRecords({ split, includeSkinTones: false }).map((r) => r.name)).size;
console.log(`  distinct base names: train ${names('train')}, held out ${names('heldout')}`);
const captions = (split: 'train' | 'heldout') => new Set(emojiRecords({ split }).flatMap((r) => r.captions)).size;
console.log(`  distinct captions (skin tones, style word optional): train ${captions('train')}, held out ${captions('heldout')}`);

console.log('tensor cache (both styles, skin tones, train + held out):');
for (const size of [64, 32]) {
  for (const run of ['cold', 'warm']) {
    const t0 = performance.now();
    let n = 0;
    for (const split of ['train', 'heldout'] as const) n += (await emojiTensorCache({ size, split, cacheDir })).ids.length;
    const seconds = (performance.now() - t0) / 1000;
    const mib = statSync(emojiCachePath(size, cacheDir)).size / 2 ** 20;
    console.log(`  ${size} px ${run}: ${n} images in ${seconds.toFixed(1)} s; file ${mib.toFixed(1)} MiB; float32 in memory ${((n * 3 * size * size * 4) / 2 ** 20).toFixed(0)} MiB`);
  }
}
if (process.argv[2] === undefined) rmSync(cacheDir, { recursive: true, force: true });

console.log('colour words vs dominant colour of the real images (no skin tones):');
const tally = new Map<string, { match: number; total: number }>();
const misses: string[] = [];
let match = 0, total = 0;
for (const split of ['train', 'heldout'] as const) {
  for (const record of emojiRecords({ split, includeSkinTones: false, styleWord: 'never' })) {
    const words = new Set(record.captions.flatMap((c) => c.split(/[^a-z]+/)).filter((w): w is ColourName => (COLOUR_WORDS as readonly string[]).includes(w)));
    if (words.size === 0) continue;
    const seen = dominantColour(await readEmojiImage(record));
    const ok = words.has(seen);
    for (const key of [...words].map((w) => `${w} ${record.style}`)) {
      const entry = tally.get(key) ?? { match: 0, total: 0 };
      entry.match += ok ? 1 : 0;
      entry.total++;
      tally.set(key, entry);
    }
    match += ok ? 1 : 0;
    total++;
    if (!ok) misses.push(`${record.style} "${record.captions[0]}" (${split}) looks ${seen}`);
  }
}
for (const [key, entry] of [...tally].sort()) console.log(`  ${key.padEnd(16)} ${entry.match}/${entry.total}`);
console.log(`  all images: ${match}/${total}; misses:\n    ${misses.join('\n    ')}`);
