// Builds the API: plugins in a fixed order — external (errors, OpenAPI, multipart, rate limit) → capabilities
// (dependencies, tenant, metrics) → routes. server.ts listens; tests call buildApp and use inject or listen.
import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyServerOptions } from 'fastify';
import multipart from '@fastify/multipart';
import rateLimit from '@fastify/rate-limit';
import { TypeBoxValidatorCompiler, registerAjvFormats } from '@fastify/type-provider-typebox';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import { errorsPlugin } from './plugins/errors.js';
import { swaggerPlugin } from './plugins/swagger.js';
import { tenantPlugin, type ResolveTenant } from './plugins/tenant.js';
import { createApiMetrics, type ApiMetrics } from './plugins/metrics.js';
import { ProblemSchema } from './schemas/common.js';
import { ModelSchema } from './schemas/models.js';
import { DatasetSchema } from './schemas/datasets.js';
import { JobSchema } from './schemas/jobs.js';
import type { ServiceDeps } from './services/deps.js';
import modelRoutes from './routes/models.js';
import datasetRoutes from './routes/datasets.js';
import jobRoutes from './routes/jobs.js';
import artifactRoutes from './routes/artifacts.js';
import healthRoutes from './routes/health.js';

declare module 'fastify' {
  interface FastifyInstance {
    deps: ServiceDeps;
    metrics: ApiMetrics;
    /** Compiles every route schema not compiled yet (see deferredSchemas); server.ts calls it after listen. */
    compileDeferredSchemas(): Promise<void>;
  }
}

/**
 * Route schemas compiled on first use. Fastify compiles every route's request validators and response serializers
 * when the app becomes ready — about a third of the CPU between the modules loading and the API listening (profiled:
 * bench/startup.bench.ts) — so /healthz would wait for all of them. Here each compiles on its route's first call, and
 * compileDeferredSchemas compiles the rest once the API listens (so a broken schema is still reported at start-up,
 * and first calls rarely pay for it).
 */
function deferredSchemas() {
  const pending = new Set<() => unknown>();
  const defer =
    <A, F extends (...args: any[]) => unknown>(compile: (arg: A) => F) =>
    (arg: A): F => {
      let fn: F | undefined;
      const build = () => {
        pending.delete(build);
        return (fn ??= compile(arg));
      };
      pending.add(build);
      return ((...args: unknown[]) => (fn ?? build())(...args)) as F;
    };
  const compileAll = async () => {
    for (const build of [...pending]) {
      build();
      await new Promise((r) => setImmediate(r)); // requests go first
    }
  };
  return { defer, compileAll };
}

export interface BuildAppOptions {
  deps: Omit<ServiceDeps, 'log'>;
  /** Auth seam: maps a request to its tenant (default: everyone is the default tenant). */
  resolveTenant?: ResolveTenant;
  /** Extra plugins registered after the capabilities and before the routes (auth, webhooks, SSE, UI). */
  plugins?: FastifyPluginAsync<any>[];
  logger?: FastifyServerOptions['logger'];
}

registerAjvFormats();

export async function buildApp(opts: BuildAppOptions): Promise<FastifyInstance> {
  const schemas = deferredSchemas();
  const app = Fastify({
    logger: opts.logger ?? { level: opts.deps.config.logLevel },
    bodyLimit: 1024 * 1024, // JSON bodies; uploads are streams with their own limit
    requestIdHeader: 'x-request-id',
    forceCloseConnections: true,
    // Fastify's own serializer (fast-json-stringify), each compiled on first use.
    schemaController: {
      compilersFactory: {
        buildSerializer: (externalSchemas, serializerOpts) =>
          schemas.defer(SerializerSelector()(externalSchemas as any, serializerOpts as any)),
      },
    },
  });
  app.setValidatorCompiler(schemas.defer(TypeBoxValidatorCompiler));
  app.decorate('compileDeferredSchemas', schemas.compileAll);

  // external
  await app.register(errorsPlugin);
  app.addSchema(ProblemSchema);
  app.addSchema(ModelSchema);
  app.addSchema(DatasetSchema);
  app.addSchema(JobSchema);
  await app.register(swaggerPlugin);
  await app.register(multipart, {
    // One byte past the limit so that an oversized file is detected (our meter or `truncated`), never cut silently.
    limits: { fileSize: opts.deps.config.maxUploadBytes + 1, files: 64, fields: 16, fieldSize: 4096, parts: 100 },
  });
  // JSON, multipart and octet-stream only: Fastify's default text/plain parser would turn a mislabelled body into a
  // string that fails validation as a 400, where the answer is 415.
  app.removeContentTypeParser('text/plain');
  // Raw uploads: hand the request stream to the route untouched (receiveUpload meters and stores it).
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));
  if (opts.deps.config.rateLimitPerMinute > 0) {
    await app.register(rateLimit, { max: opts.deps.config.rateLimitPerMinute, timeWindow: '1 minute' });
  }

  // capabilities
  app.decorate('deps', { ...opts.deps, log: app.log });
  app.decorate('metrics', createApiMetrics(opts.deps));
  await app.register(tenantPlugin, { resolveTenant: opts.resolveTenant });
  for (const plugin of opts.plugins ?? []) await app.register(plugin);

  // routes
  await app.register(healthRoutes);
  await app.register(modelRoutes);
  await app.register(datasetRoutes);
  await app.register(jobRoutes);
  await app.register(artifactRoutes);
  return app;
}
