// Non-finite values (NaN, ±Inf) in loaded weights or computed results: one NaN anywhere turns a
// whole picture black, so every loader and the pipelines' output check with these.

/** Index of the first NaN or ±Inf value, or −1 when every value is finite. */
export function firstNonFinite(data: ArrayLike<number>): number {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    // v − v is 0 for finite numbers and NaN for NaN and ±Inf: one test per value.
    if (v - v !== 0) return i;
  }
  return -1;
}

/** Throws "`what`: NaN at index i" (or ±Infinity) when a value is not finite. */
export function assertFinite(data: ArrayLike<number>, what: string): void {
  const i = firstNonFinite(data);
  if (i >= 0) throw new Error(`${what}: ${data[i]} at index ${i}; only finite numbers are allowed`);
}
