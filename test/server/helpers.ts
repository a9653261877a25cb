// A server for a test: its own outputs folder, port 0 on loopback, and small JSON helpers.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobEvent } from '../../src/server/jobs.ts';
import { type ServerOptions, startServer } from '../../src/server/server.ts';

export type TestServer = Awaited<ReturnType<typeof startServer>> & {
  request(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; body: any }>;
  submit(type: string, params: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
};

export function tempOutputs(): string {
  return mkdtempSync(join(tmpdir(), 'nuri-server-test-'));
}

export async function testServer(options: Partial<ServerOptions> = {}): Promise<TestServer> {
  const server = await startServer({ outputs: tempOutputs(), port: 0, ...options });
  const request = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const init: RequestInit = { method, headers: { ...headers } };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.body = JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] = 'application/json';
    }
    const res = await fetch(server.url + path, init);
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, headers: res.headers, body: parsed as any };
  };
  const submit = async (type: string, params: Record<string, unknown>) => {
    const res = await request('POST', '/api/v1/jobs', { type, params });
    if (res.status !== 202) throw new Error(`submit ${type}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.id as string;
  };
  return { ...server, request, submit, close: () => server.app.close() };
}

/**
 * Opens a Server-Sent Events stream; `opened` resolves once the server has subscribed (its first
 * comment arrived), `events` once `until` says stop.
 */
export function openEvents(url: string, until: (event: JobEvent) => boolean, headers: Record<string, string> = {}): { opened: Promise<void>; events: Promise<JobEvent[]> } {
  let opened!: () => void;
  const openedPromise = new Promise<void>((resolve) => (opened = resolve));
  return { opened: openedPromise, events: readEvents(url, until, headers, () => opened()) };
}

async function readEvents(url: string, until: (event: JobEvent) => boolean, headers: Record<string, string>, onOpen: () => void): Promise<JobEvent[]> {
  const res = await fetch(url, { headers });
  if (!res.ok || !res.body) throw new Error(`events: ${res.status}`);
  const events: JobEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    onOpen();
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      if (!data) continue;
      const event = JSON.parse(data) as JobEvent;
      events.push(event);
      // Leaving the loop cancels the body, which closes the connection.
      if (until(event)) return events;
    }
  }
  return events;
}
