// The OpenAPI document as the running API serves it at /openapi.json, built without any service connection (route
// registration needs none). Used by `npm run openapi` and by the drift test.
import type { FastifyPluginAsync } from 'fastify';
import { buildApp } from '../apps/api/app.js';
import { loadConfig } from '../packages/platform/config/config.js';
import type { ServiceDeps } from '../apps/api/services/deps.js';
import { documentationPlugins } from '../apps/api/plugins/service-extensions.js';

export const OPENAPI_PATH = new URL('./openapi.json', import.meta.url).pathname;

// The default documents everything the running API serves: auth (bearer scheme), webhook deliveries, events, UI.
export async function openApiDocument(
  plugins: FastifyPluginAsync<any>[] = documentationPlugins() as FastifyPluginAsync<any>[],
): Promise<Record<string, unknown>> {
  // Nothing is called on these during registration; a route would fail loudly if one were.
  const deps = { config: loadConfig({}) } as unknown as Omit<ServiceDeps, 'log'>;
  const app = await buildApp({ deps, logger: false, plugins });
  await app.ready();
  const doc = app.swagger() as Record<string, unknown>;
  await app.close();
  return doc;
}

export function serialise(doc: Record<string, unknown>): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}
