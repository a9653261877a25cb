// A job's own VAE: `vae` names one of the models folder's vae/ (here the TAESD fixture, an
// AutoencoderTiny folder), checked like `model` before the job is queued; /sdapi maps A1111's
// override_settings.sd_vae (and the sd_vae option) onto it and lists the folder at /sdapi/v1/sd-vae,
// with A1111's "Automatic": a checkpoint file's NAME.vae.safetensors beside it.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseParameters } from '../../src/io/parameters.ts';
import { FIXTURES, TINY_SD } from '../fixtures.ts';
import { type TestServer, testServer } from './helpers.ts';

let server: TestServer;
let modelsDir: string;

beforeAll(async () => {
  modelsDir = mkdtempSync(join(tmpdir(), 'nuri-vae-models-'));
  symlinkSync(TINY_SD, join(modelsDir, 'tiny-sd'));
  mkdirSync(join(modelsDir, 'vae'));
  symlinkSync(join(FIXTURES, 'tiny-taesd'), join(modelsDir, 'vae', 'tiny-taesd'));
  // A1111's layout for a checkpoint with its own VAE: NAME.vae.safetensors beside NAME.safetensors.
  symlinkSync(join(FIXTURES, 'tiny-sd-single.safetensors'), join(modelsDir, 'single.safetensors'));
  symlinkSync(join(TINY_SD, 'vae', 'diffusion_pytorch_model.safetensors'), join(modelsDir, 'single.vae.safetensors'));
  // …and NAME.yaml, its original config (the tiny text encoder's head count is not implied by its width).
  writeFileSync(join(modelsDir, 'single.yaml'), `${readFileSync(join(FIXTURES, 'tiny-sd-single.yaml'), 'utf8').trimEnd()}\n      params:\n        num_heads: 4\n`);
  // Two resident pipelines: the model with its own VAE and with the tiny one, each loaded once.
  server = await testServer({ models: modelsDir, queueSize: 4, maxLoaded: 2 });
});
afterAll(async () => {
  await server.close();
  rmSync(modelsDir, { recursive: true, force: true });
});

const SMALL = { model: 'tiny-sd', prompt: 'a cat', steps: 2, width: 64, height: 64, seed: 3, guidance: 1 };

async function run(type: string, params: Record<string, unknown>) {
  const done = await server.queue.wait(await server.submit(type, params));
  expect(done.status, done.error ?? '').toBe('completed');
  return { png: await server.store.readInput(done.images[0]), infotext: (done.info.infotexts as string[])[0] };
}

describe("a job's own VAE", () => {
  it('is listed, decodes the picture instead of the model\'s VAE, and is named in the infotext', async () => {
    const listed = await server.request('GET', '/api/v1/models');
    expect(listed.body.vaes).toEqual([{ name: 'tiny-taesd' }, { name: 'single.vae' }]);
    expect(listed.body.models.map((m: { name: string }) => m.name)).toEqual(['default', 'single', 'tiny-sd']);
    const own = await run('generate', SMALL);
    const tiny = await run('generate', { ...SMALL, vae: 'tiny-taesd' });
    expect(tiny.png.equals(own.png)).toBe(false);
    expect(parseParameters(tiny.infotext).extra).toMatchObject({ VAE: 'tiny-taesd' });
    expect(parseParameters(own.infotext).extra?.VAE).toBeUndefined();
    // The same noise, decoded by the same VAE again: the same picture (the pipeline is cached per VAE).
    expect((await run('generate', { ...SMALL, vae: 'tiny-taesd' })).png.equals(tiny.png)).toBe(true);
  });

  it('refuses a VAE the server does not have, or a path, naming the field', async () => {
    for (const vae of ['nope', '../tiny-sd/vae', '/etc']) {
      const res = await server.request('POST', '/api/v1/jobs', { type: 'generate', params: { ...SMALL, vae } });
      expect(res.status, vae).toBe(400);
      expect(res.body.field).toBe('params.vae');
      expect(res.body.error).toMatch(/no VAE named .*known: tiny-taesd, single\.vae/);
    }
  });
});

describe('A1111 sd_vae', () => {
  const txt2img = async (body: Record<string, unknown>) => {
    const res = await server.request('POST', '/sdapi/v1/txt2img', { prompt: 'a cat', steps: 2, width: 64, height: 64, seed: 3, override_settings: { sd_model_checkpoint: 'tiny-sd' }, ...body });
    expect(res.status).toBe(200);
    return { info: JSON.parse(res.body.info), job: (await server.queue.list({ offset: 0, limit: 1 })).jobs[0] };
  };

  it('lists the vae/ folder at sd-vae, and maps override_settings.sd_vae and the sd_vae option onto the job', async () => {
    expect((await server.request('GET', '/sdapi/v1/sd-vae')).body).toEqual([
      { model_name: 'tiny-taesd', filename: join(modelsDir, 'vae', 'tiny-taesd') },
      { model_name: 'single.vae.safetensors', filename: join(modelsDir, 'single.vae.safetensors') },
    ]);
    const chosen = await txt2img({ override_settings: { sd_model_checkpoint: 'tiny-sd', sd_vae: 'tiny-taesd' } });
    expect(chosen.job.params.vae).toBe('tiny-taesd');
    expect(chosen.info).toMatchObject({ sd_vae_name: 'tiny-taesd', notes: [] });
    expect(parseParameters(chosen.info.infotexts[0]).extra).toMatchObject({ VAE: 'tiny-taesd' });

    for (const own of ['Automatic', 'None']) {
      const r = await txt2img({ override_settings: { sd_model_checkpoint: 'tiny-sd', sd_vae: own } });
      expect(r.job.params.vae).toBeUndefined();
      expect(r.info).toMatchObject({ sd_vae_name: null, notes: [] });
    }
    const unknown = await txt2img({ override_settings: { sd_model_checkpoint: 'tiny-sd', sd_vae: 'vae-ft-mse-840000-ema-pruned.safetensors' } });
    expect(unknown.job.params.vae).toBeUndefined();
    expect(unknown.info.notes).toEqual([expect.stringMatching(/sd_vae "vae-ft-mse-840000-ema-pruned.safetensors" is not a VAE of this server/)]);

    // "Automatic" on a checkpoint file with NAME.vae.safetensors beside it: that VAE, as A1111 picks
    // it (the checkpoint loads with its NAME.yaml); "None": the checkpoint's own.
    const near = await txt2img({ override_settings: { sd_model_checkpoint: 'single', sd_vae: 'Automatic' } });
    expect(near.job.params).toMatchObject({ model: 'single', vae: 'single.vae' });
    expect(near.info).toMatchObject({ sd_vae_name: 'single.vae.safetensors', notes: [] });
    expect(parseParameters(near.info.infotexts[0]).extra).toMatchObject({ VAE: 'single.vae' });
    expect((await txt2img({ override_settings: { sd_model_checkpoint: 'single', sd_vae: 'None' } })).job.params.vae).toBeUndefined();

    expect((await server.request('POST', '/sdapi/v1/options', { sd_vae: 'tiny-taesd' })).status).toBe(200);
    try {
      expect((await txt2img({})).job.params.vae).toBe('tiny-taesd');
    } finally {
      await server.request('POST', '/sdapi/v1/options', { sd_vae: 'Automatic' });
    }
  });
});
