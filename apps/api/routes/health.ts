// Liveness, readiness (Postgres, Redis, storage) and Prometheus metrics.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Live, PrometheusText, Ready } from '../schemas/health.js';
import { readiness } from '../services/health.js';

const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { deps } = app;

  app.get(
    '/healthz',
    {
      schema: { tags: ['health'], summary: 'Liveness', response: { 200: Live } },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness: Postgres, Redis and storage reachable',
        response: { 200: Ready, 503: Ready },
      },
    },
    async (_request, reply) => {
      const { ok, checks } = await readiness(deps);
      return reply.status(ok ? 200 : 503).send({ status: ok ? 'ready' : 'unavailable', checks });
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        tags: ['health'],
        summary: 'Prometheus metrics',
        response: { 200: PrometheusText },
      },
    },
    async (_request, reply) => {
      const body = await app.metrics.registry.metrics();
      return reply.type(app.metrics.registry.contentType).send(body);
    },
  );
};

export default healthRoutes;
