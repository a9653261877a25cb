// The A1111 layer end to end over HTTP, driven with request bodies as A1111's own API
// documentation writes them, on the bundled default model (64×64) and tiny-sd (64×64), 2–5 steps.

import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Generator } from '../../src/engine/random.ts';
import { formatParameters, parseParameters } from '../../src/io/parameters.ts';
import { encodePng, parsePngText } from '../../src/io/png.ts';
import { loadClipTextModel } from '../../src/models/checkpoint/components.ts';
import { LoraNetwork } from '../../src/models/lora.ts';
import { writeEmbeddingFile } from '../../src/models/textual-inversion.ts';
import { loadUNet } from '../../src/models/checkpoint/components.ts';
import type { JobRecord } from '../../src/server/jobs.ts';
import { TINY_SD } from '../fixtures.ts';
import { type TestServer, testServer } from './helpers.ts';

const DEFAULT_MODEL = resolve(import.meta.dirname, '..', '..', 'models', 'default');

let modelsDir: string;
let server: TestServer;
let base: string;

/** A LoRA for the default model whose B is non-zero, so it visibly changes the picture. */
function writeTestLora(path: string): void {
  const models = { unet: loadUNet(join(DEFAULT_MODEL, 'unet')), textEncoder: loadClipTextModel(join(DEFAULT_MODEL, 'text_encoder')) };
  const rng = new Generator(3);
  const net = LoraNetwork.create(models, { rank: 2, alpha: 2, textEncoder: true }, rng);
  for (const p of net.parameters()) p.setValue(rng.randn(p.size).map((v) => v * 0.5));
  net.save(path);
}

beforeAll(async () => {
  // A models folder as `nuri serve --models` reads it: tiny-sd beside the bundled model, one LoRA.
  modelsDir = mkdtempSync(join(tmpdir(), 'nuri-sdapi-models-'));
  mkdirSync(join(modelsDir, 'loras'));
  writeTestLora(join(modelsDir, 'loras', 'sparkle.safetensors'));
  mkdirSync(join(modelsDir, 'embeddings'));
  writeEmbeddingFile(join(modelsDir, 'embeddings', 'glow.safetensors'), { token: '<glow>', vectors: [0, 1].map((k) => new Generator(k).randn(128)) });
  cpSync(TINY_SD, join(modelsDir, 'tiny-sd'), { recursive: true });
  // One server for the file: a second one in this process would free the ONNX sessions both share.
  server = await testServer({ models: modelsDir, queueSize: 2 });
  base = server.url;
}, 120_000);

afterAll(async () => {
  await server?.close();
  rmSync(modelsDir, { recursive: true, force: true });
});

/** The newest `n` jobs, oldest first: the ones the last A1111 call queued. */
async function lastJobs(n: number): Promise<JobRecord[]> {
  return (await server.queue.list({ offset: 0, limit: n })).jobs.reverse();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function call(method: 'GET' | 'POST', path: string, body?: unknown, signal?: AbortSignal) {
  // No keep-alive: a socket left open by the client would hold app.close() for its timeout.
  const headers: Record<string, string> = { connection: 'close', ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined };
}

interface Generation {
  images: string[];
  parameters: Record<string, unknown>;
  info: string;
}

const png = (b64: string) => Buffer.from(b64, 'base64');
const infotext = (b64: string) => parseParameters(parsePngText(png(b64)).parameters);

describe('/sdapi/v1/txt2img', () => {
  it("answers the A1111 wiki's example body with a PNG whose parameters parse back to the request", async () => {
    const r = await call('POST', '/sdapi/v1/txt2img', { prompt: 'puppy dog', steps: 5 });
    expect(r.status).toBe(200);
    const body = r.json as Generation;
    expect(body.images).toHaveLength(1);
    expect(typeof body.info).toBe('string');
    const info = JSON.parse(body.info);
    expect(info.all_seeds).toEqual([info.seed]);
    expect(info.seed).toBeGreaterThanOrEqual(0);
    expect(info.infotexts).toHaveLength(1);
    expect(info.sd_model_name).toBe('default');
    expect(infotext(body.images[0])).toMatchObject({ prompt: 'puppy dog', steps: 5, sampler: 'Euler', guidance: 7, seed: info.seed, width: 64, height: 64 });
    expect(parseParameters(info.infotexts[0]).seed).toBe(info.seed);
    // The request is echoed with A1111's defaults filled in.
    expect(body.parameters).toMatchObject({ prompt: 'puppy dog', steps: 5, seed: -1, cfg_scale: 7, batch_size: 1, n_iter: 1, sampler_name: 'Euler', width: 64, height: 64 });
    expect(info.notes).toEqual([]);
  });

  it('makes n_iter × batch_size images with consecutive seeds, each reproducible alone', async () => {
    const request = { prompt: 'red apple', negative_prompt: 'blue', seed: 11, steps: 2, cfg_scale: 5, sampler_name: 'DPM++ 2M', scheduler: 'Karras', batch_size: 2, n_iter: 2, width: 32, height: 32 };
    const r = await call('POST', '/sdapi/v1/txt2img', request);
    expect(r.status).toBe(200);
    const body = r.json as Generation;
    const info = JSON.parse(body.info);
    expect(info.all_seeds).toEqual([11, 12, 13, 14]);
    expect(body.images).toHaveLength(4);
    body.images.forEach((image, i) => expect(infotext(image)).toMatchObject({ prompt: 'red apple', negativePrompt: 'blue', seed: 11 + i, steps: 2, guidance: 5, sampler: 'DPM++ 2M Karras', width: 32, height: 32 }));
    expect((await lastJobs(2)).map((j) => j.params)).toMatchObject([
      { scheduler: 'dpmpp-2m-karras', batch: 2, seed: 11, guidance: 5, negativePrompt: 'blue' },
      { scheduler: 'dpmpp-2m-karras', batch: 2, seed: 13 },
    ]);
    const alone = await call('POST', '/sdapi/v1/txt2img', { ...request, seed: 13, batch_size: 1, n_iter: 1 });
    expect((alone.json as Generation).images[0]).toBe(body.images[2]);
  });

  it('takes the infotexts and size from the job records, reading result PNGs only to send them', async () => {
    const read = vi.spyOn(server.store, 'readInput');
    try {
      const r = await call('POST', '/sdapi/v1/txt2img', { prompt: 'green leaf', steps: 2, seed: 8, batch_size: 2, send_images: false });
      expect(r.status).toBe(200);
      expect((r.json as Generation).images).toEqual([]);
      expect(read).not.toHaveBeenCalled();
      const info = JSON.parse((r.json as Generation).info);
      const [job] = await lastJobs(1);
      expect(info.infotexts).toEqual(job.info.infotexts);
      expect(info.infotexts.map((t: string) => parseParameters(t).seed)).toEqual([8, 9]);
      expect(info).toMatchObject({ width: 64, height: 64 });
      const sent = await call('POST', '/sdapi/v1/txt2img', { prompt: 'green leaf', steps: 2, seed: 8, batch_size: 2 });
      expect(read).toHaveBeenCalledTimes(2);
      const body = sent.json as Generation;
      expect(JSON.parse(body.info).infotexts).toEqual(body.images.map((b64) => parsePngText(png(b64)).parameters));
    } finally {
      read.mockRestore();
    }
  });

  it('accepts the joined sampler names, the legacy sampler_index, and numbers sent as strings', async () => {
    for (const body of [{ sampler_name: 'Euler a' }, { sampler_index: 'DDIM', eta: 0.3 }, { sampler_name: 'PLMS', steps: '3', cfg_scale: '6.5' }]) {
      const r = await call('POST', '/sdapi/v1/txt2img', { prompt: 'star', steps: 2, seed: 1, ...body });
      expect(r.status).toBe(200);
    }
    const jobs = await lastJobs(3);
    expect(jobs.map((j) => j.params.scheduler)).toEqual(['euler-a', 'ddim', 'pndm']);
    expect(jobs[1].params.eta).toBe(0.3);
    expect(jobs[2].params).toMatchObject({ steps: 3, guidance: 6.5 });
  });

  it('ignores unsupported fields with a note in info, never a 500', async () => {
    const r = await call('POST', '/sdapi/v1/txt2img', {
      prompt: 'cat face',
      steps: 2,
      enable_hr: true,
      hr_scale: 2,
      restore_faces: true,
      tiling: false,
      eta: 0.5,
      alwayson_scripts: { ADetailer: { args: [] } }, // a script Nuri does not run (ControlNet's it does)
      override_settings: { sd_vae: 'vae-ft-mse' },
      some_extension_field: 1,
    });
    expect(r.status).toBe(200);
    const notes: string[] = JSON.parse((r.json as Generation).info).notes;
    expect(notes).toEqual(
      expect.arrayContaining([
        'enable_hr is not supported and was ignored',
        'restore_faces is not supported and was ignored',
        'alwayson_scripts is not supported and was ignored',
        'sd_vae "vae-ft-mse" is not a VAE of this server (GET /sdapi/v1/sd-vae); the model\'s own was used',
        'some_extension_field is not an A1111 API field and was ignored',
        'eta applies to DDIM only and was ignored for Euler',
      ]),
    );
    expect(notes.join()).not.toMatch(/tiling|hr_scale/);
  });

  it('answers bad fields with a 422 naming them, as FastAPI does', async () => {
    const cases: [Record<string, unknown>, (string | number)[]][] = [
      [{ prompt: 'x', steps: 'many' }, ['body', 'steps']],
      [{ prompt: 'x', width: 33 }, ['body', 'width']],
      [{ prompt: 'x', sampler_name: 'Heun' }, ['body', 'sampler_name']],
      [{ prompt: 'x', seed: -5 }, ['body', 'seed']],
    ];
    for (const [body, loc] of cases) {
      const r = await call('POST', '/sdapi/v1/txt2img', body);
      expect(r.status).toBe(422);
      expect(r.json.detail[0].loc).toEqual(loc);
      expect(typeof r.json.detail[0].msg).toBe('string');
    }
    const img = await call('POST', '/sdapi/v1/img2img', { prompt: 'x' });
    expect(img.status).toBe(422);
    expect(img.json.detail[0].loc).toEqual(['body', 'init_images']);
  });

  it('applies <lora:name:weight> and embeddings from the prompt, and refuses an unknown LoRA by name', async () => {
    const plain = await call('POST', '/sdapi/v1/txt2img', { prompt: 'green heart', seed: 4, steps: 2 });
    const tagged = await call('POST', '/sdapi/v1/txt2img', { prompt: 'green heart <lora:sparkle:0.8>', seed: 4, steps: 2 });
    expect(tagged.status).toBe(200);
    expect((await lastJobs(1))[0].params).toMatchObject({ prompt: 'green heart', loras: [{ name: 'sparkle', weight: 0.8 }] });
    const image = (tagged.json as Generation).images[0];
    expect(image).not.toBe((plain.json as Generation).images[0]);
    expect(parseParameters(parsePngText(png(image)).parameters).extra?.Lora).toBe('sparkle:0.8');
    expect(JSON.parse((tagged.json as Generation).info).extra_generation_params).toEqual({ Lora: 'sparkle:0.8' });

    // An embedding applies where its token is written.
    const glow = await call('POST', '/sdapi/v1/txt2img', { prompt: 'a <glow> heart', seed: 4, steps: 2 });
    expect(glow.status).toBe(200);
    expect((await lastJobs(1))[0].params).toMatchObject({ prompt: 'a <glow> heart', embeddings: ['glow'] });

    const unknown = await call('POST', '/sdapi/v1/txt2img', { prompt: 'x <lora:nope:1>', steps: 2 });
    expect(unknown.status).toBe(400);
    expect(unknown.json.detail).toMatch(/nope/);
  });

  it('answers 429 with Retry-After when the queue is full, queueing none of the batches', async () => {
    // The server holds 2 waiting jobs: 4 batches cannot all be queued.
    const r = await call('POST', '/sdapi/v1/txt2img', { prompt: 'full queue', steps: 150, n_iter: 4 });
    expect(r.status).toBe(429);
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(r.json.detail).toMatch(/full/);
    const jobs = (await lastJobs(4)).filter((j) => j.params.prompt === 'full queue');
    expect(jobs.length).toBeGreaterThan(0);
    for (const job of jobs) expect((await server.queue.wait(job.id)).status).toBe('cancelled');
  });

  it("refuses what the server's limits refuse, naming the A1111 field", async () => {
    const r = await call('POST', '/sdapi/v1/txt2img', { prompt: 'x', steps: 2, width: 4096, height: 4096 });
    expect(r.status).toBe(422);
    expect(r.json.detail[0].loc).toEqual(['body', 'width']);
    expect(r.json.detail[0].msg).toMatch(/--max-pixels/);
    const batch = await call('POST', '/sdapi/v1/txt2img', { prompt: 'x', steps: 2, batch_size: 64 });
    expect(batch.json.detail[0].loc).toEqual(['body', 'batch_size']);
  });
});

describe('/sdapi/v1/img2img', () => {
  it('takes base64 with and without a data: prefix, and keeps the request settings in the PNG', async () => {
    const source = await sharp({ create: { width: 48, height: 40, channels: 3, background: { r: 220, g: 30, b: 30 } } }).png().toBuffer();
    const request = { prompt: 'red circle', seed: 9, steps: 4, denoising_strength: 0.5, width: 32, height: 32, sampler_name: 'DDIM' };
    const bare = await call('POST', '/sdapi/v1/img2img', { ...request, init_images: [source.toString('base64')] });
    const prefixed = await call('POST', '/sdapi/v1/img2img', { ...request, init_images: [`data:image/png;base64,${source.toString('base64')}`] });
    expect(bare.status).toBe(200);
    expect(prefixed.status).toBe(200);
    const a = (bare.json as Generation).images[0];
    expect((prefixed.json as Generation).images[0]).toBe(a);
    expect(infotext(a)).toMatchObject({ prompt: 'red circle', seed: 9, steps: 4, sampler: 'DDIM', denoisingStrength: 0.5, width: 32, height: 32 });
    const [job] = await lastJobs(2);
    expect(job.params).toMatchObject({ strength: 0.5, scheduler: 'ddim' });
    // The init image reached the job resized to the asked size.
    const upload = await server.store.readInput(job.params.initImage as string);
    expect(await sharp(upload).metadata()).toMatchObject({ width: 32, height: 32 });
    expect((bare.json as Generation).parameters.init_images).toBeNull();
    const info = JSON.parse((bare.json as Generation).info);
    expect(info.denoising_strength).toBe(0.5);

    const junk = await call('POST', '/sdapi/v1/img2img', { ...request, init_images: ['not an image!'] });
    expect(junk.status).toBe(422);
    expect(junk.json.detail[0].loc).toEqual(['body', 'init_images', 0]);
  });
});

describe('/sdapi/v1/img2img with a mask', () => {
  it('inpaints where the (inverted) mask is white: mask_blur, inpainting_fill and denoising_strength reach the job', async () => {
    const source = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 220, g: 30, b: 30 } } }).png().toBuffer();
    // White on the right half; inpainting_mask_invert 1 repaints the left half instead.
    const half = Buffer.alloc(32 * 32 * 3);
    for (let i = 0; i < 32 * 32; i++) if (i % 32 >= 16) half.fill(255, i * 3, i * 3 + 3);
    const mask = (await sharp(half, { raw: { width: 32, height: 32, channels: 3 } }).png().toBuffer()).toString('base64');
    const request = { prompt: 'red circle', seed: 3, steps: 4, width: 32, height: 32, init_images: [source.toString('base64')], mask, mask_blur: 0, inpainting_mask_invert: 1, inpainting_fill: 2, denoising_strength: 0.5 };
    const r = await call('POST', '/sdapi/v1/img2img', request);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    const [job] = await lastJobs(1);
    expect(job.params).toMatchObject({ strength: 0.5, maskBlur: 0, inpaintFill: 'latent-noise' });
    const { data } = await sharp(png((r.json as Generation).images[0])).raw().toBuffer({ resolveWithObject: true });
    for (let i = 0; i < 32 * 32; i++) if (i % 32 >= 16) expect([data[i * 3], data[i * 3 + 1], data[i * 3 + 2]]).toEqual([220, 30, 30]);
    expect((r.json as Generation).parameters.mask).toBeNull();

    const defaults = await call('POST', '/sdapi/v1/img2img', { ...request, inpainting_fill: undefined, mask_blur: undefined, steps: 2 });
    expect(defaults.status).toBe(200);
    expect((await lastJobs(1))[0].params).toMatchObject({ maskBlur: 4, inpaintFill: 'fill' }); // A1111's defaults
    const bad = await call('POST', '/sdapi/v1/img2img', { ...request, inpainting_fill: 7 });
    expect(bad.status).toBe(422);
    expect(bad.json.detail[0].loc).toEqual(['body', 'inpainting_fill']);
  });
  it('inpaints "only masked" by default, as A1111 (inpaint_full_res): the picture keeps its size, the masked part drawn at width × height', async () => {
    const source = await sharp({ create: { width: 48, height: 40, channels: 3, background: { r: 30, g: 30, b: 220 } } }).png().toBuffer();
    const spot = Buffer.alloc(48 * 40 * 3);
    for (let y = 10; y < 20; y++) spot.fill(255, (y * 48 + 20) * 3, (y * 48 + 30) * 3);
    const mask = (await sharp(spot, { raw: { width: 48, height: 40, channels: 3 } }).png().toBuffer()).toString('base64');
    const request = { prompt: 'red circle', seed: 3, steps: 2, width: 32, height: 32, init_images: [source.toString('base64')], mask, mask_blur: 0, inpaint_full_res_padding: 4 };
    const r = await call('POST', '/sdapi/v1/img2img', request);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect((await lastJobs(1))[0].params).toMatchObject({ onlyMasked: { padding: 4 }, width: 32, height: 32 });
    const { data, info } = await sharp(png((r.json as Generation).images[0])).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([48, 40]);
    for (let i = 0; i < 48 * 40; i++) if (Math.floor(i / 48) >= 30) expect([data[i * 3], data[i * 3 + 1], data[i * 3 + 2]]).toEqual([30, 30, 220]);
    expect(JSON.parse((r.json as Generation).info).infotexts[0]).toMatch(/Inpaint area: Only masked, Masked area padding: 4/);

    const whole = await call('POST', '/sdapi/v1/img2img', { ...request, inpaint_full_res: false });
    expect((await lastJobs(1))[0].params.onlyMasked).toBeUndefined();
    expect((await sharp(png((whole.json as Generation).images[0])).metadata()).width).toBe(32);
  });
});

describe('/sdapi/v1/progress and /interrupt', () => {
  it('reports steps and a current image while a job runs; interrupt ends it with a note', async () => {
    const idle = await call('GET', '/sdapi/v1/progress');
    expect(idle.json).toMatchObject({ progress: 0, state: { job_count: 0 } });

    const pending = call('POST', '/sdapi/v1/txt2img', { prompt: 'blue heart', steps: 150, seed: 2, width: 64, height: 64 });
    let seen: any;
    for (let i = 0; i < 600 && !seen; i++) {
      const p = (await call('GET', '/sdapi/v1/progress')).json;
      if (p.state.sampling_step > 0 && p.current_image) seen = p;
      else await sleep(50);
    }
    expect(seen).toBeDefined();
    expect(seen.state).toMatchObject({ job_count: 1, job_no: 0, sampling_steps: 150, interrupted: false });
    expect(seen.progress).toBeGreaterThan(0);
    expect(seen.progress).toBeLessThan(1);
    expect(png(seen.current_image).subarray(1, 4).toString()).toBe('PNG');
    const skipped = (await call('GET', '/sdapi/v1/progress?skip_current_image=true')).json;
    expect(skipped.current_image).toBeNull();

    expect((await call('POST', '/sdapi/v1/interrupt')).status).toBe(200);
    const r = await pending;
    expect(r.status).toBe(200);
    const body = r.json as Generation;
    expect(body.images).toEqual([]);
    expect(JSON.parse(body.info).notes.join()).toMatch(/interrupted/);
    const after = (await call('GET', '/sdapi/v1/progress')).json;
    expect(after.state).toMatchObject({ job_count: 0, interrupted: true });
  });

  it('skip ends the running batch only, interrupt the rest', async () => {
    const pending = call('POST', '/sdapi/v1/txt2img', { prompt: 'blue heart', steps: 150, seed: 2, n_iter: 2, width: 64, height: 64 });
    const until = async (test: (p: any) => boolean) => {
      for (let i = 0; i < 600; i++) {
        const p = (await call('GET', '/sdapi/v1/progress')).json;
        if (test(p)) return p;
        await sleep(50);
      }
      throw new Error('progress never got there');
    };
    await until((p) => p.state.job_no === 0 && p.state.sampling_step > 0);
    await call('POST', '/sdapi/v1/skip');
    const second = await until((p) => p.state.job_no === 1 && p.state.sampling_step > 0);
    expect(second.state.job_count).toBe(2);
    expect(second.progress).toBeGreaterThan(0.5);
    await call('POST', '/sdapi/v1/interrupt');
    const body = (await pending).json as Generation;
    expect(body.images).toEqual([]);
    expect(JSON.parse(body.info).notes.join()).toMatch(/2 of 2 batch/);
  });

  it('cancels the job of a client that hangs up', async () => {
    const hangUp = new AbortController();
    const pending = call('POST', '/sdapi/v1/txt2img', { prompt: 'yellow star', steps: 150, seed: 3, width: 64, height: 64 }, hangUp.signal).catch((e) => e);
    let record: JobRecord | undefined;
    for (let i = 0; i < 1200; i++) {
      [record] = await lastJobs(1);
      if (record?.params.prompt === 'yellow star' && record.status === 'running' && record.progress.step > 0) break;
      await sleep(50);
    }
    expect(record?.params.prompt).toBe('yellow star');
    hangUp.abort();
    expect(await pending).toBeInstanceOf(Error);
    expect((await server.queue.wait(record!.id)).status).toBe('cancelled');
  });
});

describe('/sdapi/v1/options', () => {
  it('switches the model of later requests with sd_model_checkpoint, and echoes other options', async () => {
    const get = await call('GET', '/sdapi/v1/options');
    expect(get.json).toMatchObject({ sd_model_checkpoint: 'default', CLIP_stop_at_last_layers: 1 });

    expect((await call('POST', '/sdapi/v1/options', { sd_model_checkpoint: 'tiny-sd [0123abcd]', jpeg_quality: 90 })).status).toBe(200);
    expect((await call('GET', '/sdapi/v1/options')).json).toMatchObject({ sd_model_checkpoint: 'tiny-sd', jpeg_quality: 90 });
    const r = await call('POST', '/sdapi/v1/txt2img', { prompt: 'a cat', steps: 2, seed: 1, width: 64, height: 64 });
    expect(r.status).toBe(200);
    expect(JSON.parse((r.json as Generation).info).sd_model_name).toBe('tiny-sd');
    expect(infotext((r.json as Generation).images[0])).toMatchObject({ model: 'tiny-sd', width: 64, height: 64 });

    // A per-request override wins, and does not stick.
    const once = await call('POST', '/sdapi/v1/txt2img', { prompt: 'a cat', steps: 2, seed: 1, override_settings: { sd_model_checkpoint: 'default', CLIP_stop_at_last_layers: 2 } });
    expect(JSON.parse((once.json as Generation).info)).toMatchObject({ sd_model_name: 'default', clip_skip: 2 });
    expect((await lastJobs(1))[0].params).toMatchObject({ model: 'default', clipSkip: 2 });
    expect((await call('GET', '/sdapi/v1/options')).json.sd_model_checkpoint).toBe('tiny-sd');

    const unknown = await call('POST', '/sdapi/v1/options', { sd_model_checkpoint: 'sd_xl_base_1.0.safetensors' });
    expect(unknown.status).toBe(404);
    expect(unknown.json.detail).toMatch(/sd_xl_base/);
    const bad = await call('POST', '/sdapi/v1/options', { CLIP_stop_at_last_layers: 0 });
    expect(bad.status).toBe(422);
    await call('POST', '/sdapi/v1/options', { sd_model_checkpoint: 'default' });
  });
});

describe('/sdapi/v1/png-info and the listings', () => {
  it('reads back the parameters of an image it made', async () => {
    const made = (await call('POST', '/sdapi/v1/txt2img', { prompt: 'orange', negative_prompt: 'grey', steps: 3, seed: 21, cfg_scale: 6 })).json as Generation;
    const r = await call('POST', '/sdapi/v1/png-info', { image: `data:image/png;base64,${made.images[0]}` });
    expect(r.status).toBe(200);
    expect(r.json.info).toBe(JSON.parse(made.info).infotexts[0]);
    expect(r.json.parameters).toMatchObject({ Prompt: 'orange', 'Negative prompt': 'grey', Steps: '3', Seed: '21', 'CFG scale': '6', Sampler: 'Euler', 'Size-1': '64', 'Size-2': '64' });
    expect(r.json.items).toEqual({});
    // Nuri's own fields (the weight dtype, SDXL's size conditioning) as written; unknown ones too.
    const text = formatParameters({ prompt: 'tower', steps: 4, dtype: 'q8', sizeConditioning: { originalSize: [512, 768], cropTopLeft: [0, 64] }, extra: { Steps2: 'x' } });
    const png = await encodePng({ width: 8, height: 8, channels: 3, data: new Float32Array(3 * 64) }, { parameters: text });
    const fields = (await call('POST', '/sdapi/v1/png-info', { image: png.toString('base64') })).json.parameters;
    expect(fields).toMatchObject({ Prompt: 'tower', Steps: '4', 'Weight dtype': 'q8', 'Original size': '768x512', 'Crop top left': '0,64', Steps2: 'x' });
  });

  it('lists samplers, models, LoRAs, embeddings and scripts in A1111 shapes', async () => {
    const samplers = (await call('GET', '/sdapi/v1/samplers')).json;
    expect(samplers.map((s: { name: string }) => s.name)).toEqual(expect.arrayContaining(['Euler a', 'Euler', 'LMS', 'DDIM', 'PLMS', 'DPM++ 2M', 'DPM++ 2M Karras', 'DDPM']));
    expect(samplers[0]).toEqual({ name: expect.any(String), aliases: expect.any(Array), options: expect.any(Object) });
    const models = (await call('GET', '/sdapi/v1/sd-models')).json;
    expect(models).toContainEqual({ title: 'tiny-sd', model_name: 'tiny-sd', hash: null, sha256: null, filename: join(modelsDir, 'tiny-sd'), config: null });
    expect((await call('GET', '/sdapi/v1/loras')).json).toEqual([{ name: 'sparkle', alias: 'sparkle', path: join(modelsDir, 'loras', 'sparkle.safetensors'), metadata: {} }]);
    expect((await call('GET', '/sdapi/v1/embeddings')).json).toEqual({ loaded: { '<glow>': { step: null, sd_checkpoint: null, sd_checkpoint_name: null, shape: 128, vectors: 2 } }, skipped: {} });
    expect((await call('GET', '/sdapi/v1/scripts')).json).toEqual({ txt2img: [], img2img: [] });
    for (const path of ['upscalers', 'sd-vae', 'prompt-styles']) expect((await call('GET', `/sdapi/v1/${path}`)).json).toEqual([]);
    expect((await call('GET', '/sdapi/v1/schedulers')).json.map((s: { label: string }) => s.label)).toEqual(['Automatic', 'Uniform', 'Karras']);
  });
});
