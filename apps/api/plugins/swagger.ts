// OpenAPI 3.1 generated from the route schemas (served at /openapi.json, Swagger UI at /docs). Upload routes take
// streams Fastify does not validate; their request bodies are documented through route config.openapiRequestBody.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { readFileSync } from 'node:fs';
import { globalPlugin } from './global.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The OpenAPI requestBody of a route whose body Fastify does not parse (uploads). */
    openapiRequestBody?: unknown;
  }
}

export const OPENAPI_INFO = {
  title: 'onnx-compress',
  // The package's version, so that /docs and openapi.json say which release answers (three folders up from this
  // source, four from its compiled copy under dist/).
  version: (
    JSON.parse(
      readFileSync(
        new URL(
          import.meta.url.endsWith('.js') ? '../../../../package.json' : '../../../package.json',
          import.meta.url,
        ),
        'utf8',
      ),
    ) as { version: string }
  ).version,
  description:
    'Compress ONNX models: N:M / 2:4 sparsity, SLiM (4-bit + 2:4 + low-rank), sparse model soups. Errors are ' +
    'RFC 9457 problem+json.',
};

export const swaggerPlugin = globalPlugin('swagger', async (app: FastifyInstance) => {
  const requestBodies = new Map<string, unknown>();
  app.addHook('onRoute', (route) => {
    const body = (route.config as { openapiRequestBody?: unknown } | undefined)?.openapiRequestBody;
    if (body) requestBodies.set(`${String(route.method).toLowerCase()} ${route.url}`, body);
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: OPENAPI_INFO,
      tags: [
        { name: 'models', description: 'ONNX models to compress' },
        { name: 'datasets', description: 'Calibration and evaluation tensors' },
        { name: 'jobs', description: 'Compression jobs and their artifacts' },
        { name: 'health', description: 'Liveness, readiness, metrics' },
      ],
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
    transformObject: (documentObject) => {
      const doc = (documentObject as { openapiObject: Record<string, any> }).openapiObject;
      for (const [key, body] of requestBodies) {
        const [method, url] = key.split(' ');
        const op = doc.paths?.[url.replace(/:(\w+)/g, '{$1}')]?.[method];
        if (op) op.requestBody = body;
      }
      return doc;
    },
  });
  // persistAuthorization: the key given to Authorize survives reloads, and the job page (/jobs/:id) reuses it.
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { persistAuthorization: true } });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
});
