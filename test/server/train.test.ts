// A training job through the API: Textual Inversion for a few steps on uploaded pictures; the
// embedding lands under the models folder, is listed, and a generate job can use it.
import sharp from 'sharp';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SafetensorsFile } from '../../src/engine/safetensors.ts';
import { join } from 'node:path';
import { type TestServer, testServer } from './helpers.ts';

let server: TestServer;
beforeAll(async () => {
  server = await testServer();
});
afterAll(() => server.close());

it('trains a Textual Inversion embedding from uploads and uses it', async () => {
  const names: string[] = [];
  for (const colour of ['#e02020', '#c01818']) {
    const form = new FormData();
    const png = await sharp({ create: { width: 32, height: 32, channels: 3, background: colour } }).png().toBuffer();
    form.append('file', new Blob([new Uint8Array(png)], { type: 'image/png' }), 'red.png');
    names.push((await server.request('POST', '/api/v1/uploads', form)).body.name);
  }
  const losses: number[] = [];
  server.queue.subscribe((e) => {
    if (e.type === 'progress' && e.phase === 'training' && e.loss !== undefined) losses.push(e.loss);
  });
  const id = await server.submit('train', { method: 'textual-inversion', name: 'red-thing', images: names, token: '<red-thing>', initToken: 'apple', steps: 3 });
  const done = await server.queue.wait(id);
  expect(done.status, done.error ?? '').toBe('completed');
  expect(done.artifacts).toEqual(['embeddings/red-thing.safetensors']);
  expect(losses).toHaveLength(3);
  expect(losses.every(Number.isFinite)).toBe(true);
  const file = SafetensorsFile.open(join(server.modelsDir, 'embeddings', 'red-thing.safetensors'));
  expect(file.names()).toEqual(['<red-thing>']);
  file.close();

  const models = await server.request('GET', '/api/v1/models');
  expect(models.body.embeddings).toEqual([{ name: 'red-thing' }]);
  const generated = await server.queue.wait(await server.submit('generate', { prompt: 'a <red-thing>', embeddings: ['red-thing'], steps: 2, seed: 1 }));
  expect(generated.status, generated.error ?? '').toBe('completed');
  expect((generated.info.infotexts as string[])[0]).toContain('TI: <red-thing>');
});
