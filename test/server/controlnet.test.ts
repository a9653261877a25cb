// ControlNet through the server: the native generate job's `controlnet` list (models from the
// models folder's controlnet/), and AUTOMATIC1111's `alwayson_scripts.controlnet.args` on txt2img.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { parseParameters } from '../../src/io/parameters.ts';
import { parsePngText } from '../../src/io/png.ts';
import { FIXTURES, TINY_SD, referenceCase } from '../fixtures.ts';
import { type TestServer, testServer } from './helpers.ts';

const EDGES = readFileSync(join(FIXTURES, referenceCase('controlnet_forward').control_image_png as string));

let server: TestServer;
let modelsDir: string;
beforeAll(async () => {
  modelsDir = mkdtempSync(join(tmpdir(), 'nuri-controlnet-models-'));
  symlinkSync(TINY_SD, join(modelsDir, 'tiny-sd'));
  mkdirSync(join(modelsDir, 'controlnet'));
  symlinkSync(join(FIXTURES, 'tiny-controlnet'), join(modelsDir, 'controlnet', 'tiny-controlnet'));
  server = await testServer({ models: modelsDir });
});
afterAll(async () => {
  await server.close();
  rmSync(modelsDir, { recursive: true, force: true });
});

async function uploadEdges(): Promise<string> {
  const form = new FormData();
  form.append('file', new Blob([new Uint8Array(EDGES)], { type: 'image/png' }), 'edges.png');
  const res = await server.request('POST', '/api/v1/uploads', form);
  expect(res.status).toBe(201);
  return res.body.name;
}

async function generated(params: Record<string, unknown>): Promise<{ png: Buffer; parameters: ReturnType<typeof parseParameters> }> {
  const done = await server.queue.wait(await server.submit('generate', params));
  expect(done.status, done.error ?? '').toBe('completed');
  const res = await fetch(`${server.url}/api/v1/images/${done.images[0]}`);
  const png = Buffer.from(await res.arrayBuffer());
  return { png, parameters: parseParameters(parsePngText(png).parameters) };
}

const base = { model: 'tiny-sd', prompt: 'a house by a lake', steps: 2, width: 64, height: 64, seed: 3 };

describe('native generate job with controlnet', () => {
  it('lists the ControlNets of the models folder and not as checkpoints', async () => {
    const { body } = await server.request('GET', '/api/v1/models');
    expect(body.controlnets).toEqual([{ name: 'tiny-controlnet' }]);
    expect(body.models.map((m: { name: string }) => m.name)).not.toContain('controlnet/tiny-controlnet');
  });

  it('draws with a ControlNet and records it; the picture differs from one without', async () => {
    const image = await uploadEdges();
    const controlled = await generated({ ...base, controlnet: [{ model: 'tiny-controlnet', image, weight: 0.8, end: 0.5 }] });
    expect(controlled.parameters.extra?.['ControlNet 0']).toBe('Module: none, Model: tiny-controlnet, Weight: 0.8, Resize Mode: Just Resize, Guidance Start: 0, Guidance End: 0.5');
    const plain = await generated(base);
    expect(plain.png.equals(controlled.png)).toBe(false);
  });

  it('refuses an unknown ControlNet, a missing image and a bad window, naming the field', async () => {
    const image = await uploadEdges();
    const submit = (controlnet: unknown[]) => server.request('POST', '/api/v1/jobs', { type: 'generate', params: { ...base, controlnet } });
    const unknown = await submit([{ model: 'nope', image }]);
    expect(unknown.status).toBe(400);
    expect(unknown.body).toMatchObject({ field: 'params.controlnet.0.model', error: expect.stringMatching(/no ControlNet named "nope"/) });
    const missing = await submit([{ model: 'tiny-controlnet', image: 'upload-missing.png' }]);
    expect(missing.status).toBe(400);
    expect(JSON.stringify(missing.body)).toMatch(/params\.controlnet\.0\.image/);
    const window = await submit([{ model: 'tiny-controlnet', image, start: 0.7, end: 0.2 }]);
    expect(window.status).toBe(400);
    expect(JSON.stringify(window.body)).toMatch(/start \(0\.7\) must be below end \(0\.2\)/);
  });
});

describe("A1111's ControlNet extension API", () => {
  const unit = { image: EDGES.toString('base64'), module: 'canny', model: 'tiny-controlnet [0123abcd]', weight: 0.8, guidance_start: 0, guidance_end: 0.5, threshold_a: 50, threshold_b: -1 };
  const txt2img = (args: unknown[]) => server.request('POST', '/sdapi/v1/txt2img', { prompt: 'a house by a lake', steps: 2, width: 64, height: 64, seed: 5, override_settings: { sd_model_checkpoint: 'tiny-sd' }, alwayson_scripts: { controlnet: { args } } });

  it('runs the enabled units of alwayson_scripts.controlnet.args as the job\'s controlnet list', async () => {
    const res = await txt2img([unit, { ...unit, enabled: false }]);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const info = JSON.parse(res.body.info);
    expect(info.notes.join(' ')).not.toMatch(/alwayson_scripts/);
    expect(info.infotexts[0]).toMatch(/ControlNet 0: "Module: canny, Model: tiny-controlnet, Weight: 0\.8, Resize Mode: Crop and Resize, Threshold A: 50, Threshold B: 200, Guidance Start: 0, Guidance End: 0\.5"/);
    expect(info.extra_generation_params['ControlNet 0']).toMatch(/^Module: canny, Model: tiny-controlnet, Weight: 0\.8/);
    const job = (await server.queue.list({ offset: 0, limit: 1 })).jobs[0];
    expect(job.params.controlnet).toMatchObject([{ model: 'tiny-controlnet', fit: 'cover', weight: 0.8, start: 0, end: 0.5, preprocess: 'canny', cannyLow: 50, cannyHigh: 200 }]);
  });

  it('inpaints the whole picture when a unit runs, with a note: inpaint_full_res (on by default) is not done with ControlNet', async () => {
    const picture = await sharp({ create: { width: 48, height: 40, channels: 3, background: '#2040c0' } }).png().toBuffer();
    const mask = await sharp({ create: { width: 48, height: 40, channels: 3, background: '#ffffff' } }).png().toBuffer();
    const request = { prompt: 'a house by a lake', steps: 2, width: 64, height: 64, seed: 5, override_settings: { sd_model_checkpoint: 'tiny-sd' } };
    const res = await server.request('POST', '/sdapi/v1/img2img', { ...request, init_images: [picture.toString('base64')], mask: mask.toString('base64'), alwayson_scripts: { controlnet: { args: [unit] } } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(JSON.parse(res.body.info).notes).toContain('inpaint_full_res (only masked) with ControlNet is not supported; the whole picture was inpainted at its size');
    const job = (await server.queue.list({ offset: 0, limit: 1 })).jobs[0];
    expect(job.params).toMatchObject({ controlnet: [{ model: 'tiny-controlnet' }], mask: expect.stringMatching(/^upload-/), width: 64, height: 64 });
    expect(job.params.onlyMasked).toBeUndefined();
    expect(await sharp(Buffer.from(res.body.images[0], 'base64')).metadata()).toMatchObject({ width: 64, height: 64 });
  });

  it('names an unavailable preprocessor and an unknown model', async () => {
    const depth = await txt2img([{ ...unit, module: 'depth_midas' }]);
    expect(depth.status).toBe(422);
    expect(JSON.stringify(depth.body)).toMatch(/alwayson_scripts.*controlnet.*args.*0.*module/);
    const unknown = await txt2img([{ ...unit, model: 'control_v11p_sd15_canny [d14c016b]' }]);
    expect(unknown.status).toBe(404);
    expect(unknown.body.detail ?? unknown.body.error ?? JSON.stringify(unknown.body)).toMatch(/ControlNet model not found/);
  });

  it("lists models and modules at the extension's own routes", async () => {
    expect((await server.request('GET', '/controlnet/model_list')).body).toEqual({ model_list: ['tiny-controlnet'] });
    expect((await server.request('GET', '/controlnet/module_list')).body).toEqual({ module_list: ['none', 'canny'] });
  });
});
