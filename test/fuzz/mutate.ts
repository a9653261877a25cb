// Seeded mutations for the loader fuzz tests: JSON values swapped for hostile ones, text cut or
// flipped, safetensors headers and data bent. Deterministic, so a failure names a reproducible case.

import { Generator } from '../../src/engine/random.ts';

export class Mutator {
  private readonly rng: Generator;

  constructor(seed: number) {
    this.rng = new Generator(seed);
  }

  int(n: number): number {
    return this.rng.randint(n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Values that have broken loaders somewhere: huge, negative, fractional, wrong types, empty. */
  hostileValue(): unknown {
    return this.pick<unknown>([
      0, -1, -3, 1.5, 1e9, 1e308, -1e308, 1e-300, 4294967291, 2 ** 31, 2 ** 53 + 2, null, true, '', 'x', [], [0], [1e9, 1], {}, { a: 1 },
      Number.MAX_SAFE_INTEGER, 3, 7, 64, 65, 100000, 100001, 'NaN', [32, 32], [32, 32, 32, 32, 32], [-1, 32, 32, 64],
    ]);
  }

  /** 1–3 changes to a JSON object: a field (known or new) set to a hostile value, deleted, or nested. */
  mutateJson(json: Record<string, unknown>, extraKeys: readonly string[] = []): Record<string, unknown> {
    const out = structuredClone(json);
    const keys = [...Object.keys(out), ...extraKeys];
    for (let n = 1 + this.int(3); n > 0; n--) {
      const key = this.pick(keys);
      const how = this.int(4);
      if (how === 0) delete out[key];
      else if (how === 1 && Array.isArray(out[key]) && (out[key] as unknown[]).length) (out[key] as unknown[])[this.int((out[key] as unknown[]).length)] = this.hostileValue();
      else out[key] = this.hostileValue();
    }
    return out;
  }

  /** A text change: truncated, a byte flipped, or a character inserted. */
  mutateText(text: string): string {
    const at = this.int(text.length + 1);
    switch (this.int(3)) {
      case 0:
        return text.slice(0, at);
      case 1:
        return text.slice(0, at) + String.fromCharCode(this.int(128)) + text.slice(at + 1);
      default:
        return text.slice(0, at) + this.pick(['"', '{', '}', ',', ':', '\0', '\n', ' ', '-', '9e999']) + text.slice(at);
    }
  }

  /** A safetensors file bent: a bit flipped, cut short, a header field changed, or NaN/Inf/huge data. */
  mutateSafetensors(bytes: Buffer): Buffer {
    const out = Buffer.from(bytes);
    const headerLength = Number(out.readBigUInt64LE(0));
    switch (this.int(4)) {
      case 0: {
        const at = this.int(out.length);
        out[at] ^= 1 << this.int(8);
        return out;
      }
      case 1:
        return out.subarray(0, this.int(out.length));
      case 2: {
        const header = JSON.parse(out.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, Record<string, unknown>>;
        const name = this.pick(Object.keys(header).filter((k) => k !== '__metadata__'));
        const field = this.pick(['shape', 'dtype', 'data_offsets', 'rename']);
        if (field === 'rename') {
          header[this.pick(['', 'Cat', 'emb_params', `${name}x`, name.replace(/\d/, '9')])] = header[name]!;
          delete header[name];
        } else if (field === 'dtype') header[name]!.dtype = this.pick(['F16', 'BF16', 'F64', 'I64', 'U8', 'X']);
        else if (field === 'shape') header[name]!.shape = this.pick([[0, 32], [32, 0], [], [1], [2, 16], [1e9, 1], [-1, 32], [32, 2, 1, 1], [1, 1, 1]]);
        else header[name]!.data_offsets = this.pick([[0, 0], [0, 1e12], [8, 4], [-4, 4]]);
        const json = Buffer.from(JSON.stringify(header));
        const length = Buffer.alloc(8);
        length.writeBigUInt64LE(BigInt(json.length));
        return Buffer.concat([length, json, out.subarray(8 + headerLength)]);
      }
      default: {
        const data = 8 + headerLength;
        const floats = Math.floor((out.length - data) / 4);
        for (let n = 1 + this.int(3); n > 0 && floats > 0; n--) out.writeFloatLE(this.pick([NaN, Infinity, -Infinity, 3e38, -3e38, 1e-45]), data + 4 * this.int(floats));
        return out;
      }
    }
  }
}

/** Runs `load`; an error must be an Error naming `where`. Returns a problem description, or undefined when fine. */
export function cleanOutcome(where: string, load: () => void): string | undefined {
  try {
    load();
    return undefined;
  } catch (e) {
    if (!(e instanceof Error)) return `threw a non-Error: ${String(e)}`;
    if (!e.message.includes(where)) return `error does not name ${where}: ${e.message.slice(0, 300)}`;
    return undefined;
  }
}
