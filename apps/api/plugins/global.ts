// Marks a plugin as not encapsulated (what fastify-plugin does): its decorators and hooks apply to the parent.
import type { FastifyPluginAsync } from 'fastify';

export function globalPlugin<O extends Record<string, unknown>>(
  name: string,
  plugin: FastifyPluginAsync<O>,
): FastifyPluginAsync<O> {
  const p = plugin as FastifyPluginAsync<O> & Record<symbol, unknown>;
  p[Symbol.for('skip-override')] = true;
  p[Symbol.for('fastify.display-name')] = name;
  return p;
}
