// Sets request.tenantId for every request, through one hook. Until API keys exist every request belongs to the
// default tenant; the auth layer passes `resolveTenant` (which may throw ApiError('unauthorized')).
import type { FastifyRequest } from 'fastify';
import { DEFAULT_TENANT_ID } from '../../../packages/platform/db/client.js';
import { globalPlugin } from './global.js';

declare module 'fastify' {
  interface FastifyRequest {
    tenantId: string;
  }
}

export type ResolveTenant = (request: FastifyRequest) => Promise<string>;

export const tenantPlugin = globalPlugin<{ resolveTenant?: ResolveTenant }>('tenant', async (app, opts) => {
  app.decorateRequest('tenantId', '');
  const resolve = opts.resolveTenant ?? (async () => DEFAULT_TENANT_ID);
  app.addHook('onRequest', async (request) => {
    request.tenantId = await resolve(request);
  });
});
