// 50 clients at once, each submitting a small default-model job and polling it over HTTP: every
// job completes or is refused with 429, none is lost or run twice, and memory stays bounded.
import { expect, it } from 'vitest';
import { testServer } from './helpers.ts';

const CLIENTS = 50;
const QUEUE_SIZE = 10;
/** RSS growth allowed over the run, after the model is loaded (measured: well under half of it). */
const RSS_GROWTH_BOUND = 256 * 1024 * 1024;

it(`serves ${CLIENTS} concurrent clients: each job completes or gets 429, none lost or duplicated`, async () => {
  const server = await testServer({ queueSize: QUEUE_SIZE });
  try {
    // Warm up: the model loaded, so the memory measured after is the server's own.
    await server.queue.wait(await server.submit('generate', { prompt: 'warm up', steps: 2 }));
    const rssBefore = process.memoryUsage().rss;

    const client = async (i: number) => {
      const res = await server.request('POST', '/api/v1/jobs', { type: 'generate', params: { prompt: `client ${i}`, steps: 2, seed: i } });
      if (res.status === 429) {
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
        return { refused: true as const };
      }
      expect(res.status).toBe(202);
      for (;;) {
        const job = await server.request('GET', res.body.status_url);
        if (job.body.status !== 'queued' && job.body.status !== 'running') return { refused: false as const, job: job.body };
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const results = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));

    const accepted = results.filter((r) => !r.refused).map((r) => r.job);
    const refused = results.filter((r) => r.refused).length;
    expect(accepted.length + refused).toBe(CLIENTS);
    expect(accepted.length).toBeGreaterThanOrEqual(QUEUE_SIZE);
    expect(accepted.every((j) => j.status === 'completed')).toBe(true);
    // Each accepted job ran once, for its own client.
    expect(new Set(accepted.map((j) => j.id)).size).toBe(accepted.length);
    for (const job of accepted) {
      expect(job.images).toHaveLength(1);
      expect(job.info.seeds).toEqual([Number(job.params.prompt.split(' ')[1])]);
    }
    const history = await server.request('GET', '/api/v1/jobs?limit=100');
    const summary = JSON.stringify(history.body.jobs.map((j: any) => [j.id, j.status, j.images.length, j.error]));
    expect(history.body.total, `records on disk: ${summary}`).toBe(accepted.length + 1);
    expect(new Set(history.body.jobs.map((j: any) => j.id)).size, `records listed: ${summary}`).toBe(accepted.length + 1);
    const images = new Set(history.body.jobs.flatMap((j: any) => j.images));
    expect(images.size, `result images: ${summary}`).toBe(accepted.length + 1);

    const growth = process.memoryUsage().rss - rssBefore;
    console.log(`load: ${accepted.length} completed, ${refused} refused with 429; RSS growth ${(growth / 2 ** 20).toFixed(0)} MiB`);
    expect(growth).toBeLessThan(RSS_GROWTH_BOUND);
  } finally {
    await server.close();
  }
});
