// One error handler: everything leaves as problem+json. Expected errors (ApiError, Fastify's 4xx) keep their
// message; anything else is logged and answered with a bare 500.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isOutOfSpace } from '../../../packages/platform/storage/out-of-space.js';
import { ApiError, problem, type ProblemCode, type ProblemIssue } from '../errors.js';
import { globalPlugin } from './global.js';

function send(
  reply: FastifyReply,
  request: FastifyRequest,
  code: ProblemCode,
  detail?: string,
  errors?: ProblemIssue[],
) {
  const body = problem(code, { detail, errors, instance: request.url.split('?')[0] });
  return reply.status(body.status).type('application/problem+json').send(body);
}

function fastifyErrorCode(e: FastifyError): ProblemCode | undefined {
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
      return 'upload-too-large';
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return 'unsupported-media-type';
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return 'validation-failed';
  }
  if (e.statusCode === 429) return 'rate-limited';
  if (e.statusCode === 404) return 'not-found';
  if (e.statusCode === 405) return 'method-not-allowed';
  if (e.statusCode === 413) return 'upload-too-large';
  if (e.statusCode === 415) return 'unsupported-media-type';
  if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500) return 'validation-failed';
  return undefined;
}

const DB_DOWN_CODES = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2024']);
const DB_DOWN_KINDS = new Set(['DatabaseNotReachable', 'ConnectionClosed', 'SocketTimeout', 'TooManyConnections']);
const NET_DOWN = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH']);

/**
 * Postgres or Redis unreachable (refused, reset, pool exhausted, retries exhausted, queue not ready): the request
 * may succeed later, so the answer is 503 + Retry-After rather than 500. Recognised by name and code, not class.
 */
export function isDependencyDown(e: unknown): boolean {
  const err = e as {
    name?: string;
    code?: string;
    message?: string;
    meta?: { driverAdapterError?: { cause?: { kind?: string; originalCode?: string } } };
  } | null;
  if (!err || typeof err !== 'object') return false;
  if (err.name === 'DependencyUnavailableError' || err.name === 'MaxRetriesPerRequestError') return true;
  if (err.code && (DB_DOWN_CODES.has(err.code) || NET_DOWN.has(err.code))) return true;
  const cause = err.meta?.driverAdapterError?.cause;
  if (cause?.kind && DB_DOWN_KINDS.has(cause.kind)) return true;
  // Postgres shutting down (admin_shutdown, crash_shutdown, cannot_connect_now) as seen through the adapter.
  if (cause?.originalCode && ['57P01', '57P02', '57P03'].includes(cause.originalCode)) return true;
  return /Connection (is closed|terminated)|Can't reach database server/i.test(err.message ?? '');
}

export const errorsPlugin = globalPlugin('errors', async (app) => {
  app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
    if (error instanceof ApiError) {
      if (error.headers) reply.headers(error.headers);
      // The rest of an oversized body is not worth reading: close the connection after answering.
      if (error.code === 'upload-too-large') reply.header('connection', 'close');
      return send(reply, request, error.code, error.detail, error.errors);
    }
    if (error.validation) {
      const issues = error.validation.map((v) => ({
        path: `/${error.validationContext ?? ''}${v.instancePath ?? ''}`.replace(/\/$/, ''),
        message: v.message ?? 'invalid',
      }));
      return send(reply, request, 'validation-failed', issues.map((i) => `${i.path}: ${i.message}`).join('; '), issues);
    }
    const code = fastifyErrorCode(error);
    // Upload routes name their own types (upload.ts); every other route with a body reads JSON.
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return send(reply, request, 'unsupported-media-type', `${error.message}; send application/json`);
    }
    if (code) return send(reply, request, code, error.message);
    if (isOutOfSpace(error)) {
      // The disk (or quota) is full: the upload's staging file is already removed; the rest of the body is not read.
      request.log.error({ err: error }, 'storage full');
      reply.header('connection', 'close');
      return send(reply, request, 'insufficient-storage');
    }
    if (isDependencyDown(error)) {
      request.log.warn({ err: error }, 'dependency unavailable');
      reply.header('retry-after', '5');
      return send(reply, request, 'unavailable', 'a dependency (database or queue) is unavailable; retry shortly');
    }
    request.log.error({ err: error }, 'unhandled error');
    return send(reply, request, 'internal');
  });
  app.setNotFoundHandler((request, reply) =>
    send(reply, request, 'not-found', `no route for ${request.method} ${request.url.split('?')[0]}`),
  );
});
