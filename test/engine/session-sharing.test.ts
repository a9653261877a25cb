// Compiling the same graph twice shares one ONNX Runtime session; releasing one holder must not
// break the other (two pipelines of one model in a server), and the last release frees it.

import { describe, expect, it } from 'vitest';
import * as E from '../../src/engine/index.ts';

function spec() {
  const x = E.Tensor.input('x', [2, 3]);
  return { inputs: [x], outputs: { y: E.mul(E.add(x, x), x) } };
}

const feeds = { x: new Float32Array([1, 2, 3, 4, 5, 6]) };
const expected = [2, 8, 18, 32, 50, 72];

describe('shared sessions', () => {
  it('one holder released leaves the other working; the last release frees the session', async () => {
    const a = await E.compile(spec());
    const b = await E.compile(spec());
    expect(b.session).toBe(a.session);

    await a.release();
    await a.release(); // a second release of the same holder changes nothing
    expect(Array.from((await b.run(feeds)).y.data as Float32Array)).toEqual(expected);
    const c = await E.compile(spec());
    expect(c.session).toBe(b.session);

    await b.release();
    await c.release();
    const d = await E.compile(spec());
    expect(d.session).not.toBe(a.session);
    expect(Array.from((await d.run(feeds)).y.data as Float32Array)).toEqual(expected);
    await d.release();
    await expect(b.run(feeds)).rejects.toThrow();
  });
});
