// Tensor dimensions: plain numbers, or symbolic sizes such as the batch or the latent height, so one
// traced graph (and one ONNX Runtime session) serves every size.
//
// A symbolic dim is `coef · Π symbols + offset` with a rational coefficient. That covers everything
// a UNet or VAE does to a size (halve with a stride-2 conv, double with an upsample, flatten H·W,
// pad by one) while staying comparable: two dims are equal when their canonical keys are equal.
// Halving assumes the size is divisible: callers check sizes before they run a graph.

export type Dim = number | SymDim;

function gcd(a: number, b: number): number {
  a = Math.abs(a);
  b = Math.abs(b);
  while (b) [a, b] = [b, a % b];
  return a;
}

export class SymDim {
  /** Symbols sorted by name; repeated symbols appear repeatedly (H·H). */
  readonly symbols: readonly string[];
  readonly num: number;
  readonly den: number;
  readonly offset: number;
  readonly key: string;

  constructor(symbols: readonly string[], num = 1, den = 1, offset = 0) {
    if (den <= 0 || !Number.isInteger(num) || !Number.isInteger(den) || !Number.isInteger(offset)) {
      throw new Error(`invalid symbolic dim coefficient ${num}/${den} + ${offset}`);
    }
    const g = gcd(num, den) || 1;
    this.symbols = [...symbols].sort();
    this.num = num / g;
    this.den = den / g;
    this.offset = offset;
    const coef = this.den === 1 ? (this.num === 1 ? '' : `${this.num}*`) : `${this.num}/${this.den}*`;
    this.key = `${coef}${this.symbols.join('*')}${offset ? (offset > 0 ? `+${offset}` : `${offset}`) : ''}`;
  }

  toString(): string {
    return this.key;
  }
}

/** A named symbolic size, e.g. `sym('batch')`. */
export function sym(name: string): SymDim {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`symbol names are identifiers, got "${name}"`);
  return new SymDim([name]);
}

export function isStatic(d: Dim): d is number {
  return typeof d === 'number';
}

export function dimKey(d: Dim): string {
  return typeof d === 'number' ? String(d) : d.key;
}

export function dimEquals(a: Dim, b: Dim): boolean {
  return dimKey(a) === dimKey(b);
}

export function shapeToString(shape: readonly Dim[]): string {
  return `[${shape.map(dimKey).join(', ')}]`;
}

export function dimAdd(a: Dim, b: number): Dim {
  if (typeof a === 'number') return a + b;
  if (b === 0) return a;
  return new SymDim(a.symbols, a.num, a.den, a.offset + b);
}

export function dimMul(a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return a * b;
  if (typeof a === 'number') return dimMul(b, a);
  if (typeof b === 'number') {
    if (b === 0) return 0;
    return new SymDim(a.symbols, a.num * b, a.den, a.offset * b);
  }
  if (a.offset || b.offset) throw new Error(`cannot multiply symbolic dims with offsets: ${a} * ${b}`);
  return new SymDim([...a.symbols, ...b.symbols], a.num * b.num, a.den * b.den);
}

/** Exact division of a dim by an integer (the caller guarantees divisibility for symbolic dims). */
export function dimDiv(a: Dim, b: number): Dim {
  if (typeof a === 'number') {
    if (a % b !== 0) throw new Error(`dim ${a} is not divisible by ${b}`);
    return a / b;
  }
  if (a.offset % b !== 0) throw new Error(`symbolic dim ${a} is not divisible by ${b}`);
  return new SymDim(a.symbols, a.num, a.den * b, a.offset / b);
}

/** Divides `a` by `b` when `b` divides it: the quotient of two dims for reshape's inferred axis. */
export function dimQuotient(a: Dim, b: Dim): Dim | undefined {
  if (typeof b === 'number') {
    try {
      return dimDiv(a, b);
    } catch {
      return undefined;
    }
  }
  if (typeof a === 'number' || a.offset || b.offset) return undefined;
  const rest = [...a.symbols];
  for (const s of b.symbols) {
    const i = rest.indexOf(s);
    if (i < 0) return undefined;
    rest.splice(i, 1);
  }
  const num = a.num * b.den;
  const den = a.den * b.num;
  if (!rest.length) return num % den === 0 ? num / den : undefined;
  return new SymDim(rest, num, den);
}

/** Output size of a convolution or pooling window along one axis. */
export function convOutDim(size: Dim, kernel: number, stride: number, padTotal: number, dilation: number): Dim {
  const span = dilation * (kernel - 1) + 1;
  if (typeof size === 'number') return Math.floor((size + padTotal - span) / stride) + 1;
  // (c·S + o + padTotal − span) / stride + 1, assuming stride divides c·S.
  const base = new SymDim(size.symbols, size.num, size.den * stride);
  return dimAdd(base, Math.floor((size.offset + padTotal - span) / stride) + 1);
}

export function product(shape: readonly Dim[]): Dim {
  return shape.reduce<Dim>((acc, d) => dimMul(acc, d), 1);
}

/** NumPy broadcasting of two shapes; symbolic dims must match exactly or meet a 1. */
export function broadcastShapes(a: readonly Dim[], b: readonly Dim[], what = 'broadcast'): Dim[] {
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = i < rank - a.length ? 1 : a[i - (rank - a.length)];
    const db = i < rank - b.length ? 1 : b[i - (rank - b.length)];
    if (da === 1) out.push(db);
    else if (db === 1 || dimEquals(da, db)) out.push(da);
    else throw new Error(`${what}: shapes ${shapeToString(a)} and ${shapeToString(b)} do not broadcast`);
  }
  return out;
}
