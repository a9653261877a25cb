// Checks a config's repeat counts (levels, resnets per block, encoder layers) against the tensor
// names of its weights file before any module is built: a config that disagrees with its weights
// is then one short error naming both files, not a long list of missing tensors — or, before the
// sizes were bounded, a model built until memory ran out.


/** How many numbered children `prefix.N.` the file's tensor names have (the largest N + 1; 0 when none). */
export function countIndexed(names: readonly string[], prefix: string): number {
  const start = `${prefix}.`;
  let count = 0;
  for (const name of names) {
    if (!name.startsWith(start)) continue;
    const index = Number.parseInt(name.slice(start.length), 10);
    if (Number.isInteger(index) && index + 1 > count) count = index + 1;
  }
  return count;
}

export interface CountExpectation {
  /** The config field the count comes from, e.g. `layers_per_block`. */
  field: string;
  /** Tensor name prefix whose numbered children are counted, e.g. `down_blocks.0.resnets`. */
  prefix: string;
  expected: number;
}

/** Throws one error listing every count the weights disagree with, naming the config and the weights. */
export function checkLayerCounts(file: { path: string; names(): string[] }, configPath: string, expectations: readonly CountExpectation[]): void {
  const names = file.names();
  const problems = expectations
    .map(({ field, prefix, expected }) => ({ field, prefix, expected, found: countIndexed(names, prefix) }))
    .filter(({ expected, found }) => expected !== found)
    .map(({ field, prefix, expected, found }) => `${field} asks for ${expected} of ${prefix}.*, the weights have ${found}`);
  if (problems.length) {
    throw new Error(`${configPath} does not match the weights in ${file.path}:\n  ${problems.slice(0, 8).join('\n  ')}`);
  }
}
