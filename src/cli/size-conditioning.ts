// SDXL's size and crop conditioning flags (`--original-size`, `--target-size`, `--crop-top-left`
// and their `--negative-*` twins for the unconditional half), for the commands that draw.

import type { Command } from 'commander';
import type { SizeConditioningOptions } from '../pipelines/sdxl-conditioning.ts';
import { cropPair, sizePair } from './options.ts';

export interface SizeConditioningFlags {
  originalSize?: [number, number];
  targetSize?: [number, number];
  cropTopLeft?: [number, number];
  negativeOriginalSize?: [number, number];
  negativeTargetSize?: [number, number];
  negativeCropTopLeft?: [number, number];
}

export function sizeConditioningOptions(command: Command): Command {
  return command
    .option('--original-size <WxH>', 'SDXL: the size the picture should look taken at (default: the output size)', sizePair)
    .option('--target-size <WxH>', 'SDXL: the size to aim for (default: the output size)', sizePair)
    .option('--crop-top-left <top,left>', 'SDXL: where the picture should look cropped from (default: 0,0)', cropPair)
    .option('--negative-original-size <WxH>', 'SDXL: the unconditional half\'s original size (used with --negative-target-size)', sizePair)
    .option('--negative-target-size <WxH>', 'SDXL: the unconditional half\'s target size (used with --negative-original-size)', sizePair)
    .option('--negative-crop-top-left <top,left>', 'SDXL: the unconditional half\'s crop (default: 0,0)', cropPair);
}

/** The library's options from the flags (sizes height first). */
export function sizeConditioningFrom(flags: SizeConditioningFlags): SizeConditioningOptions {
  const { originalSize, targetSize, cropTopLeft, negativeOriginalSize, negativeTargetSize, negativeCropTopLeft } = flags;
  if (Boolean(negativeOriginalSize) !== Boolean(negativeTargetSize)) throw new Error('--negative-original-size and --negative-target-size are used together (the unconditional half repeats the conditional sizes otherwise)');
  return { originalSize, targetSize, cropTopLeft, negativeOriginalSize, negativeTargetSize, negativeCropTopLeft };
}
