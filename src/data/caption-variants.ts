// Items with more than one true caption (the emoji set: "red apple", "apple", "red apple, twemoji"):
// training draws one of them each time it draws the image, from the loop's own seeded random
// source, so the choice is reproducible and resumes with the generator's checkpointed state.
import type { RandomSource } from '../engine/index.ts';

export interface CaptionVariants {
  /** The main caption: the one to show, and to use when no random source is given. */
  caption: string;
  /** Every caption of the item, `caption` among them; absent means just `caption`. */
  captions?: readonly string[];
}

/** One caption drawn uniformly from the item's variants (one `randint` draw when there are several). */
export function pickCaption(item: CaptionVariants, rng: RandomSource): string {
  const variants = item.captions ?? [item.caption];
  if (variants.length === 0) throw new Error(`no captions to pick from (main caption ${JSON.stringify(item.caption)})`);
  return variants.length === 1 ? variants[0] : variants[rng.randint(variants.length)];
}
