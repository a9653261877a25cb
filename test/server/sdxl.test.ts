// The server serves an SDXL model like any other: listed by /sdapi/v1/sd-models, and drawn by
// /sdapi/v1/txt2img with override_settings.sd_model_checkpoint (tiny-sdxl, 64×64, 2 steps).
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseParameters } from '../../src/io/parameters.ts';
import { parsePngText } from '../../src/io/png.ts';
import { TINY_SDXL } from '../fixtures.ts';
import { type TestServer, testServer } from './helpers.ts';

let modelsDir: string;
let server: TestServer;

beforeAll(async () => {
  modelsDir = mkdtempSync(join(tmpdir(), 'nuri-sdxl-models-'));
  cpSync(TINY_SDXL, join(modelsDir, 'tiny-sdxl'), { recursive: true });
  server = await testServer({ models: modelsDir, queueSize: 2 });
}, 120_000);

afterAll(async () => {
  await server?.close();
  rmSync(modelsDir, { recursive: true, force: true });
});

async function call(method: 'GET' | 'POST', path: string, body?: unknown) {
  const headers: Record<string, string> = { connection: 'close', ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
  const res = await fetch(`${server.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

describe('an SDXL model on the server', () => {
  it('is listed and draws through /sdapi/v1/txt2img', async () => {
    const models = (await call('GET', '/sdapi/v1/sd-models')).json as { title: string; filename: string }[];
    expect(models).toContainEqual(expect.objectContaining({ title: 'tiny-sdxl', filename: join(modelsDir, 'tiny-sdxl') }));
    const r = await call('POST', '/sdapi/v1/txt2img', { prompt: 'a photo of a cat', negative_prompt: 'blurry', steps: 2, seed: 4, width: 64, height: 64, sampler_name: 'Euler', override_settings: { sd_model_checkpoint: 'tiny-sdxl' } });
    expect(r.status).toBe(200);
    const image = Buffer.from(r.json.images[0] as string, 'base64');
    expect(parseParameters(parsePngText(image).parameters)).toMatchObject({ model: 'tiny-sdxl', width: 64, height: 64, steps: 2, seed: 4 });
  }, 120_000);

  it('records the size conditioning and the weight dtype in the PNG, and remakes the picture from them', async () => {
    const params = { model: 'tiny-sdxl', prompt: 'a photo of a cat', steps: 2, seed: 9, width: 64, height: 64, scheduler: 'euler', originalSize: { width: 768, height: 512 }, targetSize: { width: 1024, height: 1024 }, cropTopLeft: { top: 32, left: 64 } };
    const run = async (p: Record<string, unknown>) => {
      const done = await server.queue.wait(await server.submit('generate', p));
      expect(done.status, done.error ?? '').toBe('completed');
      return { png: await server.store.readInput(done.images[0]), text: (done.info.infotexts as string[])[0] };
    };
    const first = await run(params);
    const read = parseParameters(parsePngText(first.png).parameters);
    expect(read.sizeConditioning).toEqual({ originalSize: [512, 768], targetSize: [1024, 1024], cropTopLeft: [32, 64] });
    expect(read.dtype).toBeUndefined(); // fp32 is not written
    // Remade from what the PNG says alone: the same picture; without the conditioning, another.
    const size = (hw: readonly [number, number] | undefined) => hw && { width: hw[1], height: hw[0] };
    const c = read.sizeConditioning!;
    const remade = await run({ model: read.model, prompt: read.prompt, steps: read.steps, seed: read.seed, width: read.width, height: read.height, scheduler: 'euler', originalSize: size(c.originalSize), targetSize: size(c.targetSize), cropTopLeft: { top: c.cropTopLeft![0], left: c.cropTopLeft![1] } });
    expect(remade.png.equals(first.png)).toBe(true);
    const plain = await run({ ...params, originalSize: undefined, targetSize: undefined, cropTopLeft: undefined });
    expect(plain.png.equals(first.png)).toBe(false);
    expect(parseParameters(plain.text).sizeConditioning).toBeUndefined();
    const q8 = await run({ ...params, dtype: 'q8' });
    expect(parseParameters(q8.text).dtype).toBe('q8');
    // The unconditional half's own sizes (guidance > 1), as the CLI's --negative-* flags: recorded, and they change the picture.
    const guided = { ...params, guidance: 5 };
    const negatives = { negativeOriginalSize: { width: 512, height: 512 }, negativeTargetSize: { width: 1024, height: 1024 }, negativeCropTopLeft: { top: 0, left: 16 } };
    const withNegatives = await run({ ...guided, ...negatives });
    expect(parseParameters(withNegatives.text).sizeConditioning).toMatchObject({ negativeOriginalSize: [512, 512], negativeTargetSize: [1024, 1024], negativeCropTopLeft: [0, 16] });
    expect(withNegatives.png.equals((await run(guided)).png)).toBe(false);
    const alone = await server.request('POST', '/api/v1/jobs', { type: 'generate', params: { ...guided, negativeOriginalSize: { width: 512, height: 512 } } });
    expect(alone.status).toBe(400);
    expect(JSON.stringify(alone.body)).toMatch(/negativeTargetSize.*given together|given together.*negativeTargetSize/);
  }, 120_000);
});
