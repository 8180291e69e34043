// POST /v1/jobs `webhook: {url, secret?}`: checks the URL's shape and the secret's form before the job is created,
// generates a whsec_ secret when none was given, and returns it once in the 202 response as `webhook: {url,
// secret}` (never again: an Idempotency-Key replay answers without it). The SSRF policy itself is applied at send
// time, after DNS (packages/platform/webhooks/resolve-target.ts). A global plugin around the jobs route, so the
// jobs service only stores what it receives.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { prepareJobWebhook } from '../../../packages/platform/webhooks/job-webhook.js';
import { ApiError } from '../errors.js';
import type { SubmitJobInput } from '../schemas/jobs.js';
import { globalPlugin } from './global.js';

const generated = new WeakMap<FastifyRequest, { url: string; secret: string }>();

export function createJobWebhookPlugin() {
  return globalPlugin('job-webhook', async (app: FastifyInstance) => {
    app.addHook('preHandler', async (request) => {
      if (request.method !== 'POST' || request.routeOptions.url !== '/v1/jobs') return;
      // A hook of every route, so the body is untyped here: on POST /v1/jobs it is the route's SubmitBody (checked
      // against it, the route reporting a mismatch itself).
      const body = request.body as SubmitJobInput | undefined;
      if (!body?.webhook) return;
      const prepared = prepareJobWebhook(body.webhook);
      if (!prepared.ok) {
        const path = prepared.code === 'invalid-webhook-url' ? '/body/webhook/url' : '/body/webhook/secret';
        throw new ApiError('validation-failed', `${path}: ${prepared.message}`, [{ path, message: prepared.message }]);
      }
      body.webhook = { url: prepared.url, secret: prepared.secret };
      if (prepared.secretGenerated) generated.set(request, { url: prepared.url, secret: prepared.secret });
    });

    app.addHook('onSend', async (request, reply, payload) => {
      const hook = generated.get(request);
      if (!hook || reply.statusCode !== 202 || reply.getHeader('idempotent-replayed')) return payload;
      if (typeof payload !== 'string') return payload;
      try {
        return JSON.stringify({ ...JSON.parse(payload), webhook: hook });
      } catch {
        return payload;
      }
    });
  });
}
