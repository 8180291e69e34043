// One error handler: everything leaves as problem+json. Expected errors (ApiError, Fastify's 4xx) keep their
// message; anything else is logged and answered with a bare 500.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
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
    if (code) return send(reply, request, code, error.message);
    request.log.error({ err: error }, 'unhandled error');
    return send(reply, request, 'internal');
  });
  app.setNotFoundHandler((request, reply) =>
    send(reply, request, 'not-found', `no route for ${request.method} ${request.url.split('?')[0]}`),
  );
});
