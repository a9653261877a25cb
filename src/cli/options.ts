// Argument parsers shared by the `nuri` subcommands: each turns a bad value into commander's
// one-line "invalid argument" error, before any work starts or any file is written.

import { InvalidArgumentError } from 'commander';

export function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ' up'}`);
    }
    return n;
  };
}

export function number(min: number, max = Infinity) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected a number from ${min}${max < Infinity ? ` to ${max}` : ' up'}`);
    }
    return n;
  };
}

/** Image sizes: multiples of 8 (the VAE's downscale), from 8 to 4096. */
export function imageSize(value: string): number {
  const n = integer(8, 4096)(value); // the default model draws at 64 px; SD at 512
  if (n % 8) throw new InvalidArgumentError('expected a multiple of 8');
  return n;
}

export function oneOf<T extends string>(choices: readonly T[]) {
  return (value: string): T => {
    if (!(choices as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${choices.join(', ')}`);
    return value as T;
  };
}

/** `NAME=VALUE` pairs, repeatable: `--reweight smiling=2 --reweight cat=0.5`. */
export function keyValue(valueParser: (v: string) => number) {
  return (value: string, previous: [string, number][] = []): [string, number][] => {
    const at = value.lastIndexOf('=');
    if (at <= 0) throw new InvalidArgumentError('expected WORD=VALUE');
    return [...previous, [value.slice(0, at), valueParser(value.slice(at + 1))]];
  };
}

/** Positive step counts, comma-separated: `--lr-cycles 8000,6000`. */
export function stepList(value: string): number[] {
  const parts = value.split(',');
  if (!parts.every((p) => /^\s*\d+\s*$/.test(p) && Number(p) > 0)) throw new InvalidArgumentError('expected positive step counts separated by commas, e.g. 8000,6000');
  return parts.map(Number);
}

/** Repeatable plain values. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** SDXL size conditioning: `WIDTHxHEIGHT` (e.g. 1024x768), returned height first as diffusers' (h, w) tuples. */
export function sizePair(value: string): [number, number] {
  const m = /^\s*(\d+)\s*x\s*(\d+)\s*$/i.exec(value);
  const [w, h] = m ? [Number(m[1]), Number(m[2])] : [NaN, NaN];
  if (!(w >= 1 && w <= 16384 && h >= 1 && h <= 16384)) throw new InvalidArgumentError('expected WIDTHxHEIGHT in pixels, e.g. 1024x768');
  return [h, w];
}

/** SDXL crop conditioning: `TOP,LEFT` in pixels (e.g. 0,256). */
export function cropPair(value: string): [number, number] {
  const m = /^\s*(\d+)\s*,\s*(\d+)\s*$/.exec(value);
  const [top, left] = m ? [Number(m[1]), Number(m[2])] : [NaN, NaN];
  if (!(top <= 16384 && left <= 16384)) throw new InvalidArgumentError('expected TOP,LEFT in pixels, e.g. 0,256');
  return [top, left];
}
