// Jobs without a scheduler take the model's own, as `nuri generate` does: a copy of the tiny model
// whose scheduler config names Euler edits and maps attention with Euler; editing a real picture
// stays on DDIM (its inversion is DDIM's) and refuses any other sampler by name. A generate job
// without steps or guidance takes its sampler's (an LCM-distilled model: 4 steps at 8.5), and so do
// edit and attention jobs; a model folder's nuri.json gives its own.
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseParameters } from '../../src/io/parameters.ts';
import { copyTinySd, editJson } from '../model-copy.ts';
import { writeLcmDistilled } from '../support/lcm-distilled.ts';
import { type TestServer, testServer } from './helpers.ts';

let server: TestServer;
let modelsDir: string;
let lcmModel: string;
let ownDefaults: string;

beforeAll(async () => {
  const model = copyTinySd();
  editJson(model, 'scheduler/scheduler_config.json', (c) => (c._class_name = 'EulerDiscreteScheduler'));
  modelsDir = mkdtempSync(join(tmpdir(), 'nuri-sampler-models-'));
  symlinkSync(model, join(modelsDir, 'euler-sd'));
  lcmModel = writeLcmDistilled(new Float32Array(32 * 8).fill(0.01));
  symlinkSync(lcmModel, join(modelsDir, 'lcm-sd'));
  ownDefaults = copyTinySd();
  writeFileSync(join(ownDefaults, 'nuri.json'), JSON.stringify({ defaults: { steps: 3, guidance: 5, reweightCarry: true } }));
  symlinkSync(ownDefaults, join(modelsDir, 'own-sd'));
  server = await testServer({ models: modelsDir });
});
afterAll(async () => {
  await server.close();
  rmSync(modelsDir, { recursive: true, force: true });
  for (const dir of [lcmModel, ownDefaults]) if (dir) rmSync(dirname(dir), { recursive: true, force: true });
});

const SMALL = { model: 'euler-sd', steps: 2, width: 64, height: 64, seed: 5, guidance: 1 };

async function sampler(type: string, params: Record<string, unknown>): Promise<string | undefined> {
  const id = await server.submit(type, params);
  const done = await server.queue.wait(id);
  expect(done.status, done.error ?? '').toBe('completed');
  expect(done.params.scheduler).toBe(params.scheduler); // the record keeps what was asked
  return parseParameters((done.info as { infotexts: string[] }).infotexts[0]).sampler;
}

describe("a job without a scheduler takes the model's own", () => {
  it('edits and maps attention with the sampler the scheduler config names', async () => {
    expect(await sampler('edit', { ...SMALL, prompt: 'a cat riding a bike', target: 'a dog riding a bike' })).toBe('Euler');
    expect(await sampler('attention', { ...SMALL, prompt: 'a cat' })).toBe('Euler');
  });

  it("refuses DDIM's eta when the model's own sampler has none, instead of ignoring it", async () => {
    const id = await server.submit('generate', { ...SMALL, prompt: 'a cat', eta: 0.5 });
    const done = await server.queue.wait(id);
    expect(done.status).toBe('failed');
    expect(done.error).toMatch(/eta is DDIM's η; the euler sampler has none/);
  });

  it('edits a real picture with DDIM, and refuses another sampler by name', async () => {
    const form = new FormData();
    const picture = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#2060d0' } }).png().toBuffer();
    form.append('file', new Blob([new Uint8Array(picture)], { type: 'image/png' }), 'p.png');
    const uploaded = await server.request('POST', '/api/v1/uploads', form);
    const photo = { ...SMALL, prompt: 'a blue square', target: 'a red square', image: uploaded.body.name, nullTextSteps: 0 };
    expect(await sampler('edit', photo)).toBe('DDIM');
    const refused = await server.request('POST', '/api/v1/jobs', { type: 'edit', params: { ...photo, scheduler: 'euler' } });
    expect(refused.status).toBe(400);
    expect(refused.body.field).toBe('params.scheduler');
    expect(refused.body.error).toMatch(/ddim.*inversion/);
  });
});

describe('a job without steps or guidance', () => {
  it("takes its sampler's: an LCM-distilled model draws 4 steps at 8.5, another model 30 at 7.5", async () => {
    const lcm = await server.queue.wait(await server.submit('generate', { model: 'lcm-sd', prompt: 'a cat', width: 64, height: 64, seed: 1 }));
    expect(lcm.status, lcm.error ?? '').toBe('completed');
    expect(lcm.progress.total).toBe(4);
    expect(parseParameters((lcm.info as { infotexts: string[] }).infotexts[0])).toMatchObject({ steps: 4, sampler: 'LCM', guidance: 8.5 });
    const plain = await server.queue.wait(await server.submit('generate', { model: 'euler-sd', prompt: 'a cat', width: 64, height: 64, seed: 1 }));
    expect(parseParameters((plain.info as { infotexts: string[] }).infotexts[0])).toMatchObject({ steps: 30, sampler: 'Euler', guidance: 7.5 });
  });

  it("takes a model folder's own (nuri.json), and the models listing says what each model gives", async () => {
    const own = await server.queue.wait(await server.submit('generate', { model: 'own-sd', prompt: 'a cat', width: 64, height: 64, seed: 1 }));
    expect(own.status, own.error ?? '').toBe('completed');
    expect(parseParameters((own.info as { infotexts: string[] }).infotexts[0])).toMatchObject({ steps: 3, guidance: 5 });
    const listed = (await server.request('GET', '/api/v1/models')).body.models;
    const byName = (name: string) => listed.find((m: { name: string }) => m.name === name);
    expect(byName('own-sd')).toMatchObject({ defaultSteps: 3, defaultGuidance: 5, reweightCarry: true });
    expect(byName('lcm-sd')).toMatchObject({ defaultSteps: 4, defaultGuidance: 8.5, reweightCarry: false });
    expect(byName('euler-sd')).toMatchObject({ defaultSteps: 30, defaultGuidance: 7.5, reweightCarry: false });
  });

  it("carries an edit's re-weights into the later words as the model's nuri.json says, unless the job says otherwise", async () => {
    const extra = async (params: Record<string, unknown>) => {
      const done = await server.queue.wait(await server.submit('edit', { model: 'own-sd', prompt: 'a red cat', reweight: { red: 0 }, width: 64, height: 64, seed: 1, ...params }));
      expect(done.status, done.error ?? '').toBe('completed');
      return parseParameters((done.info as { infotexts: string[] }).infotexts[1]).extra;
    };
    expect(await extra({})).toMatchObject({ 'P2P reweight': 'red=0', 'P2P reweight carry': 'on' });
    expect(await extra({ reweightCarry: false })).not.toHaveProperty('P2P reweight carry');
    // The rest of the edit's settings are recorded as `nuri edit` records them.
    expect(await extra({ target: 'a red dog', crossReplace: { default: 0.5, words: { dog: 0.2 } }, selfReplace: 0.3, localBlend: ['cat'] })).toMatchObject({
      'P2P edit': 'replace',
      'P2P target': 'a red dog',
      'P2P cross replace': '0.5 dog=0.2',
      'P2P self replace': '0.3',
      'P2P local blend': 'cat',
    });
  });

  it('edits and maps attention with the same defaults as a generate job', async () => {
    for (const [type, params] of [['edit', { prompt: 'a cat riding a bike', target: 'a dog riding a bike' }], ['attention', { prompt: 'a cat' }]] as const) {
      const lcm = await server.queue.wait(await server.submit(type, { ...params, model: 'lcm-sd', width: 64, height: 64, seed: 1 }));
      expect(lcm.status, lcm.error ?? '').toBe('completed');
      expect(lcm.progress.total).toBe(4);
      expect(parseParameters((lcm.info as { infotexts: string[] }).infotexts[0])).toMatchObject({ steps: 4, sampler: 'LCM', guidance: 8.5 });
    }
  });
});
