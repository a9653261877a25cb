// The native API end to end on the bundled default model (64×64, a few steps): each job kind,
// uploads, schema errors and limits, images, the OpenAPI document and the event stream.
import { connect } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseParameters } from '../../src/io/parameters.ts';
import { parsePngText } from '../../src/io/png.ts';
import { type TestServer, openEvents, testServer } from './helpers.ts';

let server: TestServer;

beforeAll(async () => {
  server = await testServer({ limits: { maxSteps: 50, maxUploadBytes: 40_000 } });
});
afterAll(() => server.close());

async function image(url: string): Promise<Buffer> {
  const res = await fetch(server.url + url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('image/png');
  return Buffer.from(await res.arrayBuffer());
}

async function upload(bytes: Buffer, type = 'image/png'): Promise<{ status: number; body: any }> {
  const form = new FormData();
  form.append('file', new Blob([new Uint8Array(bytes)], { type }), 'picture.png');
  return server.request('POST', '/api/v1/uploads', form);
}

describe('generate', () => {
  it('runs txt2img and returns PNGs whose parameters say how they were made', async () => {
    const id = await server.submit('generate', { prompt: 'a red apple', negativePrompt: 'blurry', steps: 3, seed: 42, batch: 2, scheduler: 'euler' });
    const done = await server.queue.wait(id);
    expect(done.status).toBe('completed');
    const { body } = await server.request('GET', `/api/v1/jobs/${id}`);
    expect(body).toMatchObject({ id, type: 'generate', status: 'completed', progress: { step: 3, total: 3 }, error: null });
    expect(body.images).toHaveLength(2);
    expect(body.info.seeds).toEqual([42, 43]);
    for (const [i, url] of body.images.entries()) {
      expect(url).toMatch(/^\/api\/v1\/images\/job-.*\.png$/);
      const png = await image(url);
      expect(await sharp(png).metadata()).toMatchObject({ width: 64, height: 64 });
      const parameters = parseParameters(parsePngText(png).parameters);
      // No guidance asked: the default model's own, from its nuri.json.
      expect(parameters).toMatchObject({ prompt: 'a red apple', negativePrompt: 'blurry', steps: 3, sampler: 'Euler', guidance: 5, seed: 42 + i, width: 64, height: 64, model: 'default' });
    }
  });

  it('runs img2img from an uploaded picture', async () => {
    const picture = await sharp({ create: { width: 40, height: 40, channels: 3, background: '#d02020' } }).png().toBuffer();
    const uploaded = await upload(picture);
    expect(uploaded.status).toBe(201);
    expect(uploaded.body.name).toMatch(/^upload-.*\.png$/);
    const id = await server.submit('generate', { prompt: 'a red apple', initImage: uploaded.body.name, strength: 0.5, steps: 4, seed: 1 });
    const done = await server.queue.wait(id);
    expect(done.status, done.error ?? '').toBe('completed');
    expect(done.progress.total).toBe(2); // strength 0.5 of 4 steps
    const parameters = parseParameters(parsePngText(await image(`/api/v1/images/${done.images[0]}`)).parameters);
    expect(parameters.denoisingStrength).toBe(0.5);
  });
});

describe('inpainting and outpainting jobs', () => {
  it('repaints where the uploaded mask is white and keeps the rest pixel for pixel; outpaint grows the canvas', async () => {
    const picture = await upload(await sharp({ create: { width: 32, height: 32, channels: 3, background: '#d02020' } }).png().toBuffer());
    // White on the left half: repaint there.
    const half = Buffer.alloc(32 * 32 * 3);
    for (let i = 0; i < 32 * 32; i++) if (i % 32 < 16) half.fill(255, i * 3, i * 3 + 3);
    const mask = await upload(await sharp(half, { raw: { width: 32, height: 32, channels: 3 } }).png().toBuffer());
    const id = await server.submit('generate', { prompt: 'a red apple', initImage: picture.body.name, mask: mask.body.name, maskBlur: 0, steps: 4, seed: 1, width: 32, height: 32 });
    const done = await server.queue.wait(id);
    expect(done.status, done.error ?? '').toBe('completed');
    expect(done.progress.total).toBe(4); // strength 1 by default when inpainting
    const png = await image(`/api/v1/images/${done.images[0]}`);
    const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    for (let i = 0; i < 32 * 32; i++) if (i % 32 >= 16) expect([data[i * 3], data[i * 3 + 1], data[i * 3 + 2]]).toEqual([0xd0, 0x20, 0x20]);
    expect(parseParameters(parsePngText(png).parameters).extra).toMatchObject({ 'Mask blur': '0' });

    const grown = await server.submit('generate', { prompt: 'a red apple', initImage: picture.body.name, outpaint: { left: 8, bottom: 16 }, steps: 2, seed: 1, width: 32, height: 32 });
    const out = await server.queue.wait(grown);
    expect(out.status, out.error ?? '').toBe('completed');
    expect(await sharp(await image(`/api/v1/images/${out.images[0]}`)).metadata()).toMatchObject({ width: 40, height: 48 });
  });
});

describe('only-masked inpainting', () => {
  it('refuses a picture too large to keep at its own size, naming it, before anything runs', async () => {
    // 8000 × 6000 in one bit per pixel: a few kilobytes of upload, 48 million pixels once decoded.
    const huge = await sharp({ create: { width: 8000, height: 6000, channels: 3, background: '#000000' } }).png({ palette: true, colours: 2 }).toBuffer();
    const picture = await upload(huge);
    expect(picture.status).toBe(201);
    const id = await server.submit('generate', { prompt: 'x', initImage: picture.body.name, mask: picture.body.name, onlyMasked: {}, steps: 2, width: 32, height: 32 });
    const done = await server.queue.wait(id);
    expect(done.status).toBe('failed');
    expect(done.error).toBe(`readImage: initImage ${picture.body.name} is 8000×6000 (48.0 megapixels), over the limit of 40.0`);
    expect(done.progress.step).toBe(0);
  });
});

describe('uploads', () => {
  it('accepts only images, by their bytes, and within the size limit', async () => {
    const text = await upload(Buffer.from('not a picture at all'), 'image/png');
    expect(text.status).toBe(400);
    expect(text.body.field).toBe('file');
    const big = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(50_000)]);
    const tooBig = await upload(big);
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error).toContain('40000');
  });

  it('answers 500, not 400, when a good image cannot be stored', async () => {
    const picture = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#ffffff' } }).png().toBuffer();
    const saveUpload = server.store.saveUpload.bind(server.store);
    server.store.saveUpload = () => Promise.reject(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }));
    try {
      expect((await upload(picture)).status).toBe(500);
    } finally {
      server.store.saveUpload = saveUpload;
    }
  });
});

describe('edit and attention', () => {
  it('edits a prompt: source and edit images', async () => {
    const id = await server.submit('edit', { prompt: 'a red apple', target: 'a green apple', steps: 3, seed: 5 });
    const done = await server.queue.wait(id);
    expect(done.status, done.error ?? '').toBe('completed');
    expect(done.images).toHaveLength(2);
    expect(done.info).toMatchObject({ seed: 5, source: 'a red apple', target: 'a green apple' });
    const [source, edited] = await Promise.all(done.images.map((name) => image(`/api/v1/images/${name}`)));
    expect(parseParameters(parsePngText(source).parameters).prompt).toBe('a red apple');
    expect(parseParameters(parsePngText(edited).parameters).prompt).toBe('a green apple');
  });

  it('edits an uploaded picture: inverted with the source prompt first', async () => {
    const picture = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#20a020' } }).png().toBuffer();
    const { body } = await upload(picture);
    const phases = new Set<string>();
    const stop = server.queue.subscribe((e) => {
      if (e.type === 'progress') phases.add(e.phase);
    });
    const id = await server.submit('edit', { prompt: 'a green apple', target: 'a red apple', image: body.name, steps: 2, nullTextSteps: 1, seed: 4 });
    const done = await server.queue.wait(id);
    stop();
    expect(done.status, done.error ?? '').toBe('completed');
    expect(done.images).toHaveLength(2);
    expect([...phases]).toEqual(expect.arrayContaining(['inverting', 'sampling']));
    expect(parseParameters(parsePngText(await image(`/api/v1/images/${done.images[1]}`)).parameters).extra).toMatchObject({ 'Null-text steps': '1' });
  });

  it('returns the image and one heat map per token', async () => {
    const id = await server.submit('attention', { prompt: 'a red apple', steps: 3, seed: 2 });
    const done = await server.queue.wait(id);
    expect(done.status, done.error ?? '').toBe('completed');
    const tokens = done.info.tokens as { token: string; image: number }[];
    expect(tokens.map((t) => t.token)).toEqual(['a', 'red', 'apple']);
    expect(done.images).toHaveLength(1 + tokens.length);
    const maps = await Promise.all(tokens.map((t) => image(`/api/v1/images/${done.images[t.image]}`)));
    // Each token has its own map.
    expect(new Set(maps.map((m) => m.toString('base64'))).size).toBe(tokens.length);
  });
});

describe('validation', () => {
  it('names the field of a schema error', async () => {
    const cases: [unknown, string][] = [
      [{ type: 'paint', params: {} }, 'type'],
      [{ type: 'generate', params: {} }, 'params.prompt'],
      [{ type: 'generate', params: { prompt: 'x', steps: 'many' } }, 'params.steps'],
      [{ type: 'generate', params: { prompt: 'x', colour: 'red' } }, 'params.colour'],
      [{ type: 'generate', params: { prompt: 'x', width: 33 } }, 'params.width'],
      [{ type: 'generate', params: { prompt: 'x', model: 'nope' } }, 'params.model'],
      [{ type: 'generate', params: { prompt: 'x', loras: [{ name: 'nope' }] } }, 'params.loras.0.name'],
      [{ type: 'generate', params: { prompt: 'x', initImage: 'upload-missing.png' } }, 'params.initImage'],
      [{ type: 'generate', params: { prompt: 'x', strength: 0.5 } }, 'params.strength'],
      [{ type: 'generate', params: { prompt: 'x', timestepSpacing: 'uniform' } }, 'params.timestepSpacing'],
      [{ type: 'generate', params: { prompt: 'x', scheduler: 'lcm', timestepSpacing: 'trailing' } }, 'params.timestepSpacing'],
      [{ type: 'generate', params: { prompt: 'x', scheduler: 'euler', eta: 0.5 } }, 'params.eta'],
      [{ type: 'generate', params: { prompt: 'x', mask: 'upload-missing.png' } }, 'params.mask'],
      [{ type: 'generate', params: { prompt: 'x', initImage: 'upload-missing.png', maskBlur: 2 } }, 'params.maskBlur'],
      [{ type: 'generate', params: { prompt: 'x', outpaint: { left: 12 } } }, 'params.outpaint.left'],
      [{ type: 'generate', params: { prompt: 'x', initImage: 'upload-missing.png', onlyMasked: {} } }, 'params.onlyMasked'],
      [{ type: 'generate', params: { prompt: 'x', initImage: 'upload-missing.png', mask: 'upload-missing.png', onlyMasked: {}, controlnet: [{ model: 'x', image: 'upload-missing.png' }] } }, 'params.onlyMasked'],
      [{ type: 'edit', params: { prompt: 'x', image: '../../etc/passwd' } }, 'params.image'],
      [{ type: 'train', params: { method: 'lora', name: 'x', images: [] } }, 'params.images'],
    ];
    for (const [body, field] of cases) {
      const res = await server.request('POST', '/api/v1/jobs', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.field, JSON.stringify(res.body)).toBe(field);
      expect(res.body.error).toContain(field.split('.').pop());
    }
  });

  it('refuses a request over a limit, naming the field and the limit', async () => {
    const steps = await server.request('POST', '/api/v1/jobs', { type: 'generate', params: { prompt: 'x', steps: 51 } });
    expect(steps.status).toBe(400);
    expect(steps.body).toMatchObject({ field: 'params.steps' });
    expect(steps.body.error).toContain('50');
    const size = await server.request('POST', '/api/v1/jobs', { type: 'generate', params: { prompt: 'x', width: 2048, height: 1024 } });
    expect(size.status).toBe(400);
    expect(size.body.field).toBe('params.width');
    expect(size.body.error).toContain(String(1024 * 1024));
    const prompt = await server.request('POST', '/api/v1/jobs', { type: 'generate', params: { prompt: 'x'.repeat(2001) } });
    expect(prompt.body).toMatchObject({ field: 'params.prompt' });
    expect(prompt.body.error).toContain('2000');
  });

  it('serves result images and uploads only, by name', async () => {
    for (const name of ['..%2Fjobs', '..%2F..%2Fetc%2Fpasswd', 'job-x.json', '.hidden.png', 'upload-nope.jpg']) {
      expect((await server.request('GET', `/api/v1/images/${name}`)).status).toBe(404);
    }
    // An upload comes back as it was sent (a page shows a job's starting picture by its name).
    const jpeg = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#3060c0' } }).jpeg().toBuffer();
    const sent = await upload(jpeg, 'image/jpeg');
    const back = await fetch(`${server.url}/api/v1/images/${sent.body.name}`);
    expect([back.status, back.headers.get('content-type')]).toEqual([200, 'image/jpeg']);
    expect(Buffer.from(await back.arrayBuffer()).equals(jpeg)).toBe(true);
    expect((await server.request('GET', '/api/v1/jobs/job-000000000000-000000')).status).toBe(404);
  });
});

describe('documents and lists', () => {
  it('publishes an OpenAPI document generated from the job schemas', async () => {
    const { status, body } = await server.request('GET', '/api/v1/openapi.json');
    expect(status).toBe(200);
    expect(body.openapi).toBe('3.1.0');
    const kinds = body.components.schemas.JobRequest.oneOf.map((o: any) => o.properties.type.const);
    expect(kinds).toEqual(['generate', 'edit', 'attention', 'train']);
    // A job's steps default to its sampler's (LCM: 4), said in words rather than as one default.
    for (const kind of ['GenerateParams', 'EditParams', 'AttentionParams']) {
      expect(body.components.schemas[kind].properties.steps).toMatchObject({ type: 'integer', maximum: 50, description: 'default 30; 4 with the lcm sampler' });
      expect(body.components.schemas[kind].properties.steps.default).toBeUndefined();
    }
    expect(body.components.schemas.TrainParams.oneOf.map((o: any) => o.properties.method.const)).toEqual(['textual-inversion', 'lora', 'dreambooth']);
    expect(body.paths['/api/v1/jobs'].post).toBeDefined();
  });

  it('lists models and the job history, newest first, paged', async () => {
    const models = await server.request('GET', '/api/v1/models');
    expect(models.body.models.map((m: any) => m.name)).toContain('default');
    const all = await server.request('GET', '/api/v1/jobs?limit=100');
    const times = all.body.jobs.map((j: any) => j.createdAt);
    expect(times).toEqual([...times].sort().reverse());
    const page = await server.request('GET', '/api/v1/jobs?offset=1&limit=2');
    expect(page.body.jobs.map((j: any) => j.id)).toEqual(all.body.jobs.slice(1, 3).map((j: any) => j.id));
    expect(page.body.total).toBe(all.body.total);
    expect((await server.request('GET', '/api/v1/jobs?limit=0')).body.field).toBe('limit');
  });
});

describe('events', () => {
  it('streams progress with ETA, previews and completion for a job', async () => {
    let id = '';
    const stream = openEvents(`${server.url}/api/v1/events`, (e) => e.id === id && e.type === 'completed');
    await stream.opened;
    id = await server.submit('generate', { prompt: 'a blue circle', steps: 4, seed: 3 });
    const events = (await stream.events).filter((e) => e.id === id);
    const progress = events.filter((e) => e.type === 'progress' && e.phase === 'sampling');
    expect(progress.map((e) => (e as { step: number }).step)).toEqual([1, 2, 3, 4]);
    expect(progress.at(-1)).toMatchObject({ total: 4, etaSeconds: 0 });
    const previews = events.filter((e) => e.type === 'preview');
    expect(previews).toHaveLength(4);
    const preview = Buffer.from((previews[0] as { image: string }).image.replace(/^data:image\/png;base64,/, ''), 'base64');
    expect((await sharp(preview).metadata()).format).toBe('png');
    expect(events.at(-1)).toMatchObject({ type: 'completed', images: [`${id}-1.png`] });
    // A stream opened after the end still says how the job ended.
    const late = openEvents(`${server.url}/api/v1/events?job=${id}`, (e) => e.type === 'completed');
    expect(await late.events).toEqual([{ type: 'completed', id, images: [`${id}-1.png`], artifacts: [] }]);
  });

  it('lets go of a stream whose client left before it was set up', async () => {
    const id = await server.submit('generate', { prompt: 'a red circle', steps: 1, seed: 1 });
    let active = 0;
    const subscribe = server.queue.subscribe.bind(server.queue);
    server.queue.subscribe = (listener) => {
      active++;
      const unsubscribe = subscribe(listener);
      return () => {
        active--;
        return unsubscribe();
      };
    };
    try {
      const { port } = new URL(server.url);
      for (let i = 0; i < 20; i++) {
        const socket = connect(Number(port), '127.0.0.1');
        socket.on('error', () => {}); // the server may reset a connection its client already dropped
        socket.write(`GET /api/v1/events${i % 2 ? `?job=${id}` : ''} HTTP/1.1\r\nhost: localhost\r\n\r\n`, () => socket.destroy());
      }
      // Each stream lets go once the server has seen its client leave (slow on a loaded machine).
      for (let waited = 0; active > 0 && waited < 10_000; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(active).toBe(0);
    } finally {
      server.queue.subscribe = subscribe;
    }
  });
});
