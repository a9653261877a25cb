// The native job field promptSyntax (default on) and the A1111 layer, which always reads the syntax.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateValidator } from '../../src/server/sdapi/native.ts';
import { type TestServer, testServer } from './helpers.ts';

let server: TestServer;
beforeAll(async () => {
  server = await testServer({ limits: { maxSteps: 50 } });
});
afterAll(() => server.close());

describe('prompt syntax in jobs', () => {
  it('heat maps name the words of a weighted prompt; promptSyntax false reads the brackets as tokens', async () => {
    const tokensOf = async (params: Record<string, unknown>) => {
      const done = await server.queue.wait(await server.submit('attention', { prompt: 'a (red:1.5) [apple]', steps: 2, seed: 2, ...params }));
      expect(done.status, done.error ?? '').toBe('completed');
      return (done.info.tokens as { token: string }[]).map((t) => t.token);
    };
    expect(await tokensOf({})).toEqual(['a', 'red', 'apple']);
    expect(await tokensOf({ promptSyntax: false })).toEqual(['a', '(', 'red', ':', '1', '.', '5', ')', '[', 'apple', ']']);
  });

  it('a literal prompt says so in its infotext (AUTOMATIC1111 would read the brackets)', async () => {
    const done = await server.queue.wait(await server.submit('generate', { prompt: 'a (red) apple', steps: 1, seed: 1, promptSyntax: false }));
    expect(done.status, done.error ?? '').toBe('completed');
    expect((done.info.infotexts as string[])[0]).toContain('Prompt syntax: off');
  });

  it('the A1111 layer leaves the syntax on, as AUTOMATIC1111 always reads it', () => {
    const params = generateValidator()({ prompt: 'a (red:1.5) apple', model: 'default' });
    expect(params.promptSyntax).toBe(true);
  });
});
