// Reading a recorded diffusers scheduler case: its index entry and its tensors as plain arrays.
import { SafetensorsFile } from '../../src/engine/safetensors.ts';
import { referenceCase, type ReferenceCase } from '../fixtures.ts';

export interface LoadedCase {
  meta: ReferenceCase & { config: Record<string, unknown>; tolerance?: string; num_inference_steps?: number };
  has(name: string): boolean;
  floats(name: string): Float32Array;
  /** Integer (or float) values as JS numbers: timestep lists. */
  numbers(name: string): number[];
  /** Row i of a tensor stacked over steps. */
  row(name: string, i: number): Float32Array;
}

export function loadCase(name: string): LoadedCase {
  const meta = referenceCase(name) as LoadedCase['meta'];
  const file = SafetensorsFile.open(meta.file);
  const cache = new Map<string, Float32Array>();
  const floats = (tensor: string) => {
    let values = cache.get(tensor);
    if (!values) cache.set(tensor, (values = file.readFloat32(tensor)));
    return values;
  };
  return {
    meta,
    has: (tensor) => file.has(tensor),
    floats,
    numbers: (tensor) => {
      const { data } = file.read(tensor);
      return Array.from(data as ArrayLike<number | bigint>, Number);
    },
    row: (tensor, i) => {
      const [steps] = file.entry(tensor).shape;
      const all = floats(tensor);
      const size = all.length / steps!;
      return all.subarray(i * size, (i + 1) * size);
    },
  };
}

/** max |a − b| */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} ≠ ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** max |a| */
export function maxAbs(a: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]!));
  return max;
}
