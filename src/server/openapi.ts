// The OpenAPI 3.1 document of the native API, served at GET /api/v1/openapi.json. The job
// parameter schemas come from the zod schemas the server validates with (z.toJSONSchema), so the
// document always says what the server accepts.

import { z } from 'zod';
import { JOB_STATUSES, JOB_TYPES } from './jobs.ts';
import type { JobSchemas } from './schemas.ts';

const PARAMS_NAME = { generate: 'GenerateParams', edit: 'EditParams', attention: 'AttentionParams', train: 'TrainParams' } as const;

const error = { type: 'object', properties: { error: { type: 'string' }, field: { type: 'string', description: 'the request field at fault, e.g. params.steps' } }, required: ['error'] };
const json = (schema: object) => ({ content: { 'application/json': { schema } } });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

export function openApiDocument(schemas: JobSchemas, version: string): Record<string, unknown> {
  const params = Object.fromEntries(
    JOB_TYPES.map((type) => {
      const { $schema: _, ...schema } = z.toJSONSchema(schemas[type], { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
      return [PARAMS_NAME[type], schema];
    }),
  );
  const jobRequest = {
    oneOf: JOB_TYPES.map((type) => ({ type: 'object', properties: { type: { const: type }, params: ref(PARAMS_NAME[type]) }, required: ['type', 'params'], additionalProperties: false })),
    discriminator: { propertyName: 'type' },
  };
  const job = {
    type: 'object',
    properties: {
      id: { type: 'string' },
      type: { enum: [...JOB_TYPES] },
      status: { enum: [...JOB_STATUSES] },
      progress: { type: 'object', properties: { step: { type: 'integer' }, total: { type: 'integer' }, phase: { type: 'string' } } },
      images: { type: 'array', items: { type: 'string' }, description: 'URLs under /api/v1/images/' },
      artifacts: { type: 'array', items: { type: 'string' }, description: "files a training job added under the models folder" },
      info: { type: 'object', description: 'seeds, A1111 infotexts, heat-map tokens' },
      error: { type: ['string', 'null'] },
      params: { type: 'object' },
      createdAt: { type: 'string' },
      startedAt: { type: ['string', 'null'] },
      finishedAt: { type: ['string', 'null'] },
      status_url: { type: 'string' },
    },
    required: ['id', 'type', 'status', 'progress', 'images', 'error'],
  };
  const id = [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }];
  const bad = { description: 'invalid request: `field` names what is wrong', ...json(ref('Error')) };
  const missing = { description: 'no such job', ...json(ref('Error')) };
  return {
    openapi: '3.1.0',
    info: { title: 'Nuri', version, description: 'Text-to-image jobs (generate, edit, attention, train) with a queue, progress events and PNG results.' },
    components: {
      schemas: { ...params, JobRequest: jobRequest, Job: job, Error: error },
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'needed when the server was started with a token' } },
    },
    security: [{ bearer: [] }, {}],
    paths: {
      '/api/v1/jobs': {
        post: {
          summary: 'submit a job',
          requestBody: { required: true, ...json(ref('JobRequest')) },
          responses: {
            202: { description: 'queued', ...json({ type: 'object', properties: { id: { type: 'string' }, status_url: { type: 'string' } } }) },
            400: bad,
            429: { description: 'the queue is full; see Retry-After', ...json(ref('Error')) },
          },
        },
        get: {
          summary: 'job history, newest first',
          parameters: [
            { name: 'offset', in: 'query', schema: { type: 'integer', minimum: 0, default: 0 } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 } },
          ],
          responses: { 200: { description: 'a page of jobs', ...json({ type: 'object', properties: { jobs: { type: 'array', items: ref('Job') }, total: { type: 'integer' } } }) } },
        },
      },
      '/api/v1/jobs/{id}': { get: { summary: 'a job', parameters: id, responses: { 200: { description: 'the job', ...json(ref('Job')) }, 404: missing } } },
      '/api/v1/jobs/{id}/cancel': {
        post: { summary: 'cancel a job (a running one stops between two steps)', parameters: id, responses: { 200: { description: 'the job as it now stands', ...json(ref('Job')) }, 404: missing } },
      },
      '/api/v1/images/{name}': {
        get: { summary: 'a result image (PNG with A1111 parameters), or an upload by its name', parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }], responses: { 200: { description: 'the image', content: { 'image/png': {}, 'image/jpeg': {}, 'image/webp': {} } }, 404: missing } },
      },
      '/api/v1/uploads': {
        post: {
          summary: 'upload an image (PNG, JPEG or WebP) for img2img, edits and training',
          requestBody: { content: { 'multipart/form-data': { schema: { type: 'object', properties: { file: { type: 'string', format: 'binary' } } } } } },
          responses: { 201: { description: 'stored', ...json({ type: 'object', properties: { name: { type: 'string' } } }) }, 400: bad, 413: { description: 'over the upload size limit', ...json(ref('Error')) } },
        },
      },
      '/api/v1/models': { get: { summary: 'models, LoRAs, embeddings, ControlNets and VAEs', responses: { 200: { description: 'lists', ...json({ type: 'object' }) } } } },
      '/api/v1/events': {
        get: {
          summary: 'Server-Sent Events: queue position, progress with ETA, previews, loss, completion, errors',
          parameters: [{ name: 'job', in: 'query', schema: { type: 'string' }, description: "only this job's events" }],
          responses: { 200: { description: 'an event stream, one JSON object per data line', content: { 'text/event-stream': {} } } },
        },
      },
      '/api/v1/openapi.json': { get: { summary: 'this document', responses: { 200: { description: 'OpenAPI 3.1', ...json({ type: 'object' }) } } } },
      '/api/v1/session': {
        post: {
          summary: 'with --token: trade the token for the session cookie a browser sends with every request (images and events too)',
          security: [],
          requestBody: { content: { 'application/json': { schema: { type: 'object', properties: { token: { type: 'string' } }, required: ['token'] } } } },
          responses: { 204: { description: 'signed in: Set-Cookie nuri_token (HttpOnly, SameSite=Strict)' }, 401: { description: 'wrong token', ...json(ref('Error')) } },
        },
      },
      '/health': { get: { summary: 'liveness (never needs the token)', security: [], responses: { 200: { description: 'ok', ...json({ type: 'object' }) } } } },
    },
  };
}
