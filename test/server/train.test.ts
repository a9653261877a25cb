// A training job through the API: Textual Inversion for a few steps on uploaded pictures; the
// embedding lands under the models folder, is listed, and a generate job can use it.
import sharp from 'sharp';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SafetensorsFile } from '../../src/engine/safetensors.ts';
import { parseParameters } from '../../src/io/parameters.ts';
import { join } from 'node:path';
import { type TestServer, testServer } from './helpers.ts';

let server: TestServer;
beforeAll(async () => {
  server = await testServer();
});
afterAll(() => server.close());

async function uploads(colours: string[]): Promise<string[]> {
  const names: string[] = [];
  for (const colour of colours) {
    const form = new FormData();
    const png = await sharp({ create: { width: 32, height: 32, channels: 3, background: colour } }).png().toBuffer();
    form.append('file', new Blob([new Uint8Array(png)], { type: 'image/png' }), 'picture.png');
    names.push((await server.request('POST', '/api/v1/uploads', form)).body.name);
  }
  return names;
}

it('trains a Textual Inversion embedding from uploads and uses it', async () => {
  const names = await uploads(['#e02020', '#c01818']);
  const losses: number[] = [];
  const samples: number[] = [];
  server.queue.subscribe((e) => {
    if (e.type === 'progress' && e.phase === 'training' && e.loss !== undefined) losses.push(e.loss);
    if (e.type === 'preview' && e.image.startsWith('data:image/png;base64,')) samples.push(e.step);
  });
  const id = await server.submit('train', { method: 'textual-inversion', name: 'red-thing', images: names, token: '<red-thing>', initToken: 'apple', steps: 3, sampleEvery: 2, sampleSteps: 2 });
  const done = await server.queue.wait(id);
  expect(done.status, done.error ?? '').toBe('completed');
  expect(done.artifacts).toEqual(['embeddings/red-thing.safetensors']);
  expect(losses).toHaveLength(3);
  expect(samples).toEqual([2]); // a sample picture as the job's preview every 2 steps
  expect(losses.every(Number.isFinite)).toBe(true);
  const file = SafetensorsFile.open(join(server.modelsDir, 'embeddings', 'red-thing.safetensors'));
  expect(file.names()).toEqual(['<red-thing>']);
  file.close();

  const models = await server.request('GET', '/api/v1/models');
  expect(models.body.embeddings).toEqual([{ name: 'red-thing', token: '<red-thing>' }]);
  const generated = await server.queue.wait(await server.submit('generate', { prompt: 'a <red-thing>', embeddings: ['red-thing'], steps: 2, seed: 1 }));
  expect(generated.status, generated.error ?? '').toBe('completed');
  expect((generated.info.infotexts as string[])[0]).toContain('TI: <red-thing>');
});

it('trains a LoRA on captioned uploads, which a generate job then applies', async () => {
  const names = await uploads(['#2020e0', '#1818c0']);
  const id = await server.submit('train', { method: 'lora', name: 'blue-things', images: names, captions: ['a blue square', 'a dark blue square'], rank: 2, steps: 2 });
  const done = await server.queue.wait(id);
  expect(done.status, done.error ?? '').toBe('completed');
  expect(done.artifacts).toEqual(['loras/blue-things.safetensors']);
  expect(done.info.losses).toHaveLength(2);
  expect((await server.request('GET', '/api/v1/models')).body.loras).toEqual([{ name: 'blue-things' }]);
  const generated = await server.queue.wait(await server.submit('generate', { prompt: 'a blue square', loras: [{ name: 'blue-things', weight: 0.8 }], steps: 2, seed: 1, width: 32, height: 32 }));
  expect(generated.status, generated.error ?? '').toBe('completed');
  expect(parseParameters((generated.info.infotexts as string[])[0]).extra).toMatchObject({ Lora: 'blue-things:0.8' });
  // An edit of that result remakes it with the same LoRA (Studio sends the result's loras along): the
  // edit's batch of two rounds a few values one level apart from the single picture, no more.
  const edited = await server.queue.wait(await server.submit('edit', { prompt: 'a blue square', target: 'a red square', loras: [{ name: 'blue-things', weight: 0.8 }], steps: 2, seed: 1, width: 32, height: 32 }));
  expect(edited.status, edited.error ?? '').toBe('completed');
  const [source, edit] = (edited.info.infotexts as string[]).map(parseParameters);
  expect(source).toMatchObject({ prompt: 'a blue square', extra: { Lora: 'blue-things:0.8' } });
  expect(edit.prompt).toBe('a red square');
  const pixels = async (name: string) => sharp(Buffer.from(await (await fetch(`${server.url}/api/v1/images/${name}`)).arrayBuffer())).raw().toBuffer();
  const [remade, original] = [await pixels(edited.images[0]), await pixels(generated.images[0])];
  expect(remade.length).toBe(original.length);
  const apart = remade.filter((v, i) => v !== original[i]).length;
  expect(Math.max(...remade.map((v, i) => Math.abs(v - original[i])))).toBeLessThanOrEqual(1);
  expect(apart, `${apart} of ${remade.length} values differ`).toBeLessThanOrEqual(remade.length / 100);
});

// Pipelines of one model share ONNX Runtime sessions (cached by graph): a training job that frees
// its own must leave the server's cached pipeline working ("Session already disposed" before).
it('a training job between img2img and generate jobs leaves the cached pipeline working', async () => {
  const run = async (type: 'generate' | 'train', params: Record<string, unknown>) => {
    const done = await server.queue.wait(await server.submit(type, params));
    expect(done.status, done.error ?? '').toBe('completed');
    return done;
  };
  const first = await run('generate', { prompt: 'red apple', steps: 2, seed: 5 });
  await run('generate', { prompt: 'green apple', initImage: first.images[0], strength: 0.5, steps: 2, seed: 5 });
  await run('train', { method: 'textual-inversion', name: 'shared-thing', images: await uploads(['#20e020', '#18c018']), token: '<shared-thing>', initToken: 'apple', steps: 2 });
  await run('generate', { prompt: 'a <shared-thing>', embeddings: ['shared-thing'], steps: 2, seed: 5 });
  await run('generate', { prompt: 'green apple', initImage: first.images[0], strength: 0.5, steps: 2, seed: 6 });
});

it('a cancelled training job resumes from its checkpoint in a new job', async () => {
  const params = { method: 'textual-inversion', name: 'resumed-thing', images: await uploads(['#e0e020', '#c0c018']), token: '<resumed-thing>', initToken: 'apple', steps: 60 };
  const steps = new Map<string, number[]>();
  server.queue.subscribe((e) => {
    if (e.type === 'progress' && e.phase === 'training') steps.set(e.id, [...(steps.get(e.id) ?? []), e.step]);
  });
  const first = await server.submit('train', params);
  while ((steps.get(first) ?? []).length < 3) await new Promise((r) => setTimeout(r, 20));
  await server.request('POST', `/api/v1/jobs/${first}/cancel`);
  expect((await server.queue.wait(first)).status).toBe('cancelled');
  const stoppedAt = Math.max(...steps.get(first)!);
  expect(stoppedAt).toBeLessThan(60);

  const second = await server.submit('train', { ...params, resume: first });
  const done = await server.queue.wait(second);
  expect(done.status, done.error ?? '').toBe('completed');
  expect(done.info.resumedFrom).toBe(first);
  expect(steps.get(second)![0]).toBeGreaterThan(stoppedAt); // no step of the first job is trained again
  expect(done.artifacts).toEqual(['embeddings/resumed-thing.safetensors']);

  const again = await server.queue.wait(await server.submit('train', { ...params, resume: first }));
  expect(again.status).toBe('failed');
  expect(again.error).toMatch(/no stopped training run job-/);
});
