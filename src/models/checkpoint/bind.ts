// The one binder: points each parameter of a model at its tensor in the checkpoint (the bytes stay in
// the file) and reports every problem at once, in one format, so that a wrong or foreign checkpoint
// is one error a user can read rather than the first of a hundred:
//
//   cannot load VAE from /m/vae/diffusion_pytorch_model.safetensors: 3 problem(s)
//     missing tensor for decoder.conv_out.bias [3]
//     tensor "encoder.conv_in.bias" in /m/vae/…safetensors: expected shape [32] for encoder.conv_in.bias, found [31]
//     unexpected tensor decoder.spare.weight [2] in /m/vae/…safetensors

import { shapeToString } from '../../engine/dims.ts';
import type { Parameter, RowRange } from '../../engine/parameter.ts';
import type { SafetensorsFile } from '../../engine/safetensors.ts';
import type { Weights } from './weights.ts';

/** Where a parameter's tensor is: its file, its name there, and how it may differ in layout. */
export interface TensorLocation {
  file: SafetensorsFile;
  tensorName: string;
  /** The stored shape may differ if the elements and their order agree (a 1×1 conv for a linear). */
  sameBytes?: boolean;
  /** Only these rows of the stored tensor (a third of a fused q/k/v projection). */
  rows?: RowRange;
}

export type TensorLocator = (parameterName: string) => TensorLocation | undefined;

export interface BindOptions {
  /** What the error says cannot be loaded: "UNet", "CLIP text encoder". */
  what: string;
  /** Other names the tensor may have (older checkpoints), tried in order after the parameter's own. */
  aliases?: (parameterName: string) => string[];
  /** Parameters whose tensor may be stored in another shape with the same elements in the same order. */
  sameBytes?: (parameter: Parameter) => boolean;
  /** Tensors the model has no parameter for that are no error (saved buffers such as position_ids). */
  ignore?: (tensorName: string) => boolean;
}

/**
 * Binds every parameter to the tensor of its name (or an alias) in `weights`. Missing tensors,
 * misshapen ones and tensors no parameter takes are all reported in one error.
 */
export function bindWeights(params: readonly Parameter[], weights: Weights, options: BindOptions): void {
  const byName = new Map(params.map((p) => [p.name, p]));
  const locate: TensorLocator = (name) => {
    const tensorName = [name, ...(options.aliases?.(name) ?? [])].find((n) => weights.has(n));
    return tensorName === undefined ? undefined : { file: weights.fileOf(tensorName)!, tensorName, sameBytes: options.sameBytes?.(byName.get(name)!) };
  };
  bindLocated(params, locate, { what: options.what, from: weights.path, every: weights, ignore: options.ignore });
}

export interface LocatedOptions {
  what: string;
  /** The checkpoint, as the error's first line names it. */
  from: string;
  /** Weights whose every tensor some parameter must take (else it is reported as unexpected). */
  every?: Weights;
  ignore?: (tensorName: string) => boolean;
}

/**
 * Binds through a locator, for checkpoints whose names are not the model's (a single file's keys,
 * fused projections split by rows, two folders feeding one model).
 */
export function bindLocated(params: readonly Parameter[], locate: TensorLocator, options: LocatedOptions): void {
  const used = new Set<string>();
  const problems = bindAll(params, (name) => {
    const found = locate(name);
    if (found) used.add(found.tensorName);
    return found;
  });
  const every = options.every;
  const unexpected = (every?.names() ?? [])
    .filter((name) => !used.has(name) && !options.ignore?.(name))
    .map((name) => `unexpected tensor ${name} ${shapeToString(every!.entry(name).shape)} in ${every!.fileOf(name)!.path}`);
  report(options.what, options.from, problems, unexpected);
}

function bindAll(params: readonly Parameter[], locate: TensorLocator): string[] {
  const problems: string[] = [];
  for (const p of params) {
    const found = locate(p.name);
    if (!found) {
      problems.push(`missing tensor for ${p.name} ${shapeToString(p.shape)}`);
      continue;
    }
    try {
      p.bindFile(found.file, found.file.entry(found.tensorName), found.sameBytes, found.rows);
    } catch (e) {
      problems.push((e as Error).message); // names the tensor, its file, and both shapes
    }
  }
  return problems;
}

/** At most this many lines of each list; a real mismatch shows its pattern well before. */
const SHOWN = 12;

function report(what: string, from: string, problems: string[], unexpected: string[]): void {
  const count = problems.length + unexpected.length;
  if (!count) return;
  const lines = [...shown(problems, 'problems'), ...shown(unexpected, 'unexpected tensors')];
  throw new Error(`cannot load ${what} from ${from}: ${count} problem(s)\n  ${lines.join('\n  ')}`);
}

function shown(lines: string[], noun: string): string[] {
  return lines.length > SHOWN ? [...lines.slice(0, SHOWN), `… and ${lines.length - SHOWN} more ${noun}`] : lines;
}
