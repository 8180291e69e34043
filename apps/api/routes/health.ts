// Liveness, readiness (Postgres, Redis, storage) and Prometheus metrics.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Live, PrometheusText, Ready } from '../schemas/health.js';

async function probe(fn: () => Promise<unknown>, ms = 2000): Promise<{ ok: boolean; error?: string }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms))),
    ]);
    return { ok: true };
  } catch (e) {
    // Only the kind of failure: connection strings and hostnames stay private.
    return { ok: false, error: (e as Error).name === 'Error' ? 'unreachable' : (e as Error).name };
  } finally {
    clearTimeout(timer);
  }
}

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
      const [postgres, redis, storage] = await Promise.all([
        probe(() => deps.db.$queryRaw`SELECT 1`),
        probe(() => deps.redis.ping()),
        probe(() => deps.storage.check()),
      ]);
      const ok = postgres.ok && redis.ok && storage.ok;
      return reply
        .status(ok ? 200 : 503)
        .send({ status: ok ? 'ready' : 'unavailable', checks: { postgres, redis, storage } });
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
