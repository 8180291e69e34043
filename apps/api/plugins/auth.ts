// API-key authentication for every /v1 route: `Authorization: Bearer <key>` → request.tenantId (and apiKeyId), or a
// 401 problem+json. Also: the per-key rate limit (429 + Retry-After), per-tenant quotas on job submission and
// uploads, and the bearer security scheme in the OpenAPI document (so Swagger UI shows "Authorize").
// Registered through buildApp's `plugins` (after the tenant plugin, so its hook overrides the default tenant).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import type { Db } from '../../../packages/platform/db/client.js';
import { bearerToken } from '../../../packages/platform/auth/api-key.js';
import type { AuthConfig } from '../../../packages/platform/config/config.js';
import { authenticateApiKey } from '../../../packages/platform/auth/keys.js';
import { checkJobQuota, checkStorageQuota } from '../../../packages/platform/auth/quotas.js';
import { takeToken } from '../../../packages/platform/auth/rate-limit.js';
import { ApiError } from '../errors.js';
import { globalPlugin } from './global.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The API key that authenticated this request (null outside /v1). */
    apiKeyId: string | null;
  }
}

export const BEARER_SCHEME_NAME = 'bearerAuth';
export const BEARER_SECURITY_SCHEMES = {
  [BEARER_SCHEME_NAME]: {
    type: 'http',
    scheme: 'bearer',
    description: 'An API key (oc_…). Create one with `npx onnx-compress keys create --tenant <name>`.',
  },
} as const;

export interface AuthPluginOptions {
  db: Db;
  redis: Redis;
  /** Key prefix for the rate-limit counters (the service's QUEUE_PREFIX). */
  prefix: string;
  config: AuthConfig;
}

const UNAUTHORIZED_HEADERS = { 'www-authenticate': 'Bearer realm="onnx-compress"' };

function isV1(url: string): boolean {
  return url === '/v1' || url.startsWith('/v1/') || url.startsWith('/v1?');
}

/** Upload routes whose size counts against the storage quota. */
const UPLOAD_ROUTES = new Set(['/v1/models', '/v1/datasets']);

export function createAuthPlugin(opts: AuthPluginOptions) {
  return globalPlugin('auth', async (app: FastifyInstance) => {
    app.decorateRequest('apiKeyId', null);

    app.addHook('onRequest', async (request, reply) => {
      // The matched route decides (no spelling of the URL can route to /v1 and skip this); the raw URL covers 404s.
      if (!isV1(request.routeOptions.url ?? '') && !isV1(request.url)) return;
      const header = request.headers.authorization;
      const token = bearerToken(header);
      if (!token) {
        throw new ApiError(
          'unauthorized',
          header ? 'the Authorization header must be "Bearer <API key>"' : 'send "Authorization: Bearer <API key>"',
          undefined,
          UNAUTHORIZED_HEADERS,
        );
      }
      const who = await authenticateApiKey(opts.db, token);
      // One answer for unknown, malformed and revoked keys: nothing to learn from the difference.
      if (!who)
        throw new ApiError('unauthorized', 'the API key is not valid or was revoked', undefined, UNAUTHORIZED_HEADERS);
      request.tenantId = who.tenantId;
      request.apiKeyId = who.keyId;
      const limit = opts.config.rateLimitPerKeyPerMinute;
      if (limit > 0) {
        const v = await takeToken(opts.redis, opts.prefix, who.keyId, limit);
        reply.header('x-ratelimit-limit', String(v.limit));
        reply.header('x-ratelimit-remaining', String(v.remaining));
        reply.header('x-ratelimit-reset', String(Math.ceil(v.resetMs / 1000)));
        if (!v.ok) {
          throw new ApiError('rate-limited', `more than ${limit} requests per minute with this API key`, undefined, {
            'retry-after': String(v.retryAfterS),
          });
        }
      }
    });

    app.addHook('preHandler', async (request: FastifyRequest) => {
      if (request.method !== 'POST' || !request.apiKeyId) return;
      const url = request.routeOptions.url;
      if (url === '/v1/jobs') {
        const q = await checkJobQuota(opts.db, request.tenantId, opts.config);
        if (!q.ok) throw new ApiError('rate-limited', q.message, undefined, { 'retry-after': '30' });
      } else if (url && UPLOAD_ROUTES.has(url)) {
        const declared = Number(request.headers['content-length'] ?? 0);
        const q = await checkStorageQuota(
          opts.db,
          request.tenantId,
          Number.isFinite(declared) ? declared : 0,
          opts.config,
        );
        if (!q.ok) throw new ApiError('upload-too-large', q.message);
      }
    });

    // The OpenAPI document gets the bearer scheme, and every /v1 operation requires it. @fastify/swagger resolves
    // route-level `security` against the schemes declared in its own options (which buildApp owns), so the scheme
    // is added to the generated document instead; idempotent, and a no-op where the options already declare it.
    if (typeof app.swagger !== 'function') return;
    const generate = app.swagger.bind(app) as (o?: { yaml?: boolean }) => unknown;
    const withScheme = ((o?: { yaml?: boolean }) => {
      const doc = generate(o);
      if (o?.yaml || typeof doc !== 'object' || doc === null) return doc;
      addBearerSecurity(doc as OpenApiDoc);
      return doc;
    }) as typeof app.swagger;
    (app as { swagger: typeof app.swagger }).swagger = withScheme;
  });
}

interface OpenApiDoc {
  components?: { securitySchemes?: Record<string, unknown> };
  paths?: Record<string, Record<string, { security?: unknown }>>;
}

/** Declares the bearer scheme and puts it on every /v1 operation of an OpenAPI document (in place). */
export function addBearerSecurity(doc: OpenApiDoc): void {
  doc.components ??= {};
  doc.components.securitySchemes ??= {};
  doc.components.securitySchemes[BEARER_SCHEME_NAME] ??= BEARER_SECURITY_SCHEMES[BEARER_SCHEME_NAME];
  for (const [path, ops] of Object.entries(doc.paths ?? {})) {
    if (!isV1(path)) continue;
    for (const op of Object.values(ops)) {
      if (op && typeof op === 'object') op.security ??= [{ [BEARER_SCHEME_NAME]: [] }];
    }
  }
}
