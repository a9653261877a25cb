// Prompt-to-Prompt on the default model, measured (issue 11) the way a person would judge it on
// emoji, which sit on a white background:
//
//   swap       a word swap ("cat face" → "dog face") at the paper's settings keeps the source's
//              layout: the luminance correlation between source and edit, beside that between the
//              source and the target prompt drawn plainly from the same seed (what the edit would be
//              without Prompt-to-Prompt)
//   blend      local blend at the default size runs, and keeps the background: mean change outside
//              the source's object against the mean change inside it
//   reweight   a colour word re-weighted by 0, 0.5, 1, 2, 3: how much of the object and of the
//              picture shows that hue, and how saturated it is (down-weighting shows whether the
//              colour comes from the colour word at all: CLIP is causal, so the noun after it
//              carries the colour too)
//   heat maps  a noun's cross-attention map: its share of the map's mass that falls on the object,
//              against the object's share of the picture (a map that ignores the object gets its
//              area share; one that lands on it gets more)
import type { RgbImage } from '../io/image.ts';
import { type HueName, type HueStats, areaAverage, foregroundMask, hueStats } from '../data/colour.ts';
import { crossAttentionMaps } from '../pipelines/attention-maps.ts';
import { edit } from '../pipelines/edit.ts';
import { generate } from '../pipelines/generate.ts';
import { P2P_DEFAULTS } from '../pipelines/prompt-to-prompt.ts';
import type { StableDiffusion } from '../pipelines/stable-diffusion.ts';

/** Word swaps between names of the training set that share a layout (faces, hearts, fruit). */
export const SWAPS: readonly (readonly [string, string])[] = [
  ['cat face', 'dog face'],
  ['red heart', 'blue heart'],
  ['red apple', 'green apple'],
  ['tiger face', 'horse face'],
];
/** Local blends: [source, target, blended word]. */
export const BLENDS: readonly (readonly [string, string, string])[] = [
  ['red heart', 'green heart', 'heart'],
  ['red apple', 'green apple', 'apple'],
];
export const REWEIGHTS: readonly (readonly [string, HueName])[] = [
  ['red apple', 'red'],
  ['blue heart', 'blue'],
  ['green apple', 'green'],
  ['yellow heart', 'yellow'],
];
export const REWEIGHT_FACTORS = [0, 0.5, 1, 2, 3] as const;
/** [prompt, noun]. */
export const HEAT_MAPS: readonly (readonly [string, string])[] = [
  ['red apple', 'apple'],
  ['dog face', 'dog'],
  ['rocket', 'rocket'],
  ['pizza', 'pizza'],
  ['blue heart', 'heart'],
];

export interface EditChecks {
  swap: { pairs: number; withPromptToPrompt: number; withoutPromptToPrompt: number };
  blend: { runs: number; failures: string[]; outsideChange: number; insideChange: number };
  reweight: { prompts: number; byFactor: Record<string, HueStats> };
  heatMaps: { prompts: number; massOnObject: number; objectArea: number };
}

export interface EditCheckOptions {
  seeds: readonly number[];
  steps?: number;
  onLine?: (line: string) => void;
}

export async function editChecks(sd: StableDiffusion, o: EditCheckOptions): Promise<EditChecks> {
  const say = o.onLine ?? (() => {});
  const settings = { scheduler: 'ddim' as const, ...(o.steps ? { steps: o.steps } : {}) };
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

  const withP2P: number[] = [];
  const without: number[] = [];
  for (const [source, target] of SWAPS) {
    for (const seed of o.seeds) {
      const { images } = await edit(sd, { ...settings, source, target, seed, crossReplace: P2P_DEFAULTS.crossReplace, selfReplace: P2P_DEFAULTS.selfReplace });
      const plain = (await generate(sd, { ...settings, prompts: [target], seed })).images[0];
      withP2P.push(luminanceCorrelation(images[0], images[1]));
      without.push(luminanceCorrelation(images[0], plain));
    }
  }
  const swap = { pairs: withP2P.length, withPromptToPrompt: mean(withP2P), withoutPromptToPrompt: mean(without) };
  say(`word swap: layout correlation ${swap.withPromptToPrompt.toFixed(3)} with Prompt-to-Prompt, ${swap.withoutPromptToPrompt.toFixed(3)} drawn plainly (${swap.pairs} pairs × seeds)`);

  const failures: string[] = [];
  const outside: number[] = [];
  const inside: number[] = [];
  for (const [source, target, word] of BLENDS) {
    for (const seed of o.seeds) {
      try {
        const { images } = await edit(sd, { ...settings, source, target, seed, localBlend: { words: [word] } });
        const [a, b] = meanChange(images[0], images[1], foregroundMask(images[0]));
        outside.push(a);
        inside.push(b);
      } catch (e) {
        failures.push(`"${source}" → "${target}", seed ${seed}: ${(e as Error).message}`);
      }
    }
  }
  const blend = { runs: outside.length, failures, outsideChange: mean(outside), insideChange: mean(inside) };
  say(`local blend: ${blend.runs} ran, ${failures.length} failed${failures.length ? ` (${failures[0]})` : ''}; mean change outside the object ${blend.outsideChange.toFixed(4)}, inside ${blend.insideChange.toFixed(4)}`);

  const byFactor: Record<string, HueStats> = {};
  for (const factor of REWEIGHT_FACTORS) {
    const stats: HueStats[] = [];
    for (const [prompt, hue] of REWEIGHTS) {
      for (const seed of o.seeds) {
        const { images } = await edit(sd, { ...settings, source: prompt, seed, reweight: { [hue]: factor } });
        stats.push(hueStats(images[1], hue));
      }
    }
    byFactor[String(factor)] = { objectShare: mean(stats.map((s) => s.objectShare)), pictureShare: mean(stats.map((s) => s.pictureShare)), saturation: mean(stats.map((s) => s.saturation)) };
  }
  const reweight = { prompts: REWEIGHTS.length * o.seeds.length, byFactor };
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  say(`re-weight of the colour word (×${REWEIGHT_FACTORS.join(', ×')}): share of the object in that hue ${REWEIGHT_FACTORS.map((f) => pct(byFactor[f].objectShare)).join(', ')}; of the picture ${REWEIGHT_FACTORS.map((f) => pct(byFactor[f].pictureShare)).join(', ')}; saturation ${REWEIGHT_FACTORS.map((f) => byFactor[f].saturation.toFixed(3)).join(', ')}`);

  const mass: number[] = [];
  const area: number[] = [];
  for (const [prompt, noun] of HEAT_MAPS) {
    for (const seed of o.seeds) {
      const result = await crossAttentionMaps(sd, { ...settings, prompt, seed });
      const positions = new Set(sd.components.tokenizer.wordTokenIndices(prompt, noun));
      const map = new Float32Array(result.mapHeight * result.mapWidth);
      for (const t of result.tokens) if (positions.has(t.position)) t.map.forEach((v, i) => (map[i] += v));
      const object = areaAverage(foregroundMask(result.image), result.image.width, result.image.height, result.mapWidth, result.mapHeight);
      const total = map.reduce((a, b) => a + b, 0);
      mass.push(map.reduce((a, v, i) => a + v * object[i], 0) / total);
      area.push(mean([...object]));
    }
  }
  const heatMaps = { prompts: mass.length, massOnObject: mean(mass), objectArea: mean(area) };
  say(`heat maps of the noun: ${(100 * heatMaps.massOnObject).toFixed(1)}% of the map on the object, which covers ${(100 * heatMaps.objectArea).toFixed(1)}% of the picture`);
  return { swap, blend, reweight, heatMaps };
}

function luminance(image: RgbImage): Float64Array {
  const plane = image.width * image.height;
  const out = new Float64Array(plane);
  for (let i = 0; i < plane; i++) out[i] = 0.299 * image.data[i] + 0.587 * image.data[plane + i] + 0.114 * image.data[2 * plane + i];
  return out;
}

/** Pearson correlation of two pictures' luminance: 1 for the same layout of light and dark. */
export function luminanceCorrelation(a: RgbImage, b: RgbImage): number {
  const x = luminance(a);
  const y = luminance(b);
  const n = x.length;
  const mx = x.reduce((s, v) => s + v, 0) / n;
  const my = y.reduce((s, v) => s + v, 0) / n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
    syy += (y[i] - my) ** 2;
  }
  return sxx && syy ? sxy / Math.sqrt(sxx * syy) : 0;
}

/** Mean absolute change per value [outside, inside] the mask. */
function meanChange(a: RgbImage, b: RgbImage, mask: Uint8Array): [number, number] {
  const plane = a.width * a.height;
  const sums = [0, 0];
  const counts = [0, 0];
  for (let i = 0; i < plane; i++) {
    const k = mask[i];
    for (let c = 0; c < 3; c++) sums[k] += Math.abs(a.data[c * plane + i] - b.data[c * plane + i]);
    counts[k] += 3;
  }
  return [sums[0] / Math.max(1, counts[0]), sums[1] / Math.max(1, counts[1])];
}
