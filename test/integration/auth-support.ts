// A real service for the auth/SSE/browser tests: the team's buildApp with the auth, webhook-delivery, events and UI
// plugins, listening on a free port, over a throwaway database and a unique Redis prefix.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../apps/api/app.js';
import { openServiceExtensions, type ServiceExtensions } from '../../apps/api/plugins/service-extensions.js';
import { loadConfig } from '../../packages/platform/config/config.js';
import { openPlatform, type Platform } from '../../packages/platform/platform.js';
import { REDIS_URL } from './webhooks-support.js';

export interface TestService {
  app: FastifyInstance;
  platform: Platform;
  ext: ServiceExtensions;
  url: string;
  close(): Promise<void>;
}

export async function startTestService(
  databaseUrl: string,
  prefix: string,
  env: Record<string, string> = {},
  opts: { eventsPollIntervalMs?: number; storageDir?: string; migrate?: boolean } = {},
): Promise<TestService> {
  const dir = opts.storageDir ?? mkdtempSync(join(tmpdir(), 'oc-auth-'));
  const fullEnv = {
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    QUEUE_PREFIX: prefix,
    STORAGE_DIR: join(dir, 'storage'),
    WORK_DIR: join(dir, 'work'),
    LOG_LEVEL: 'warn',
    PORT: '0',
    HOST: '127.0.0.1',
    ...env,
  };
  const config = loadConfig(fullEnv);
  // A second service on an already-migrated database skips the (slow, wasm) migration check.
  const platform = await openPlatform(config, { migrate: opts.migrate ?? true });
  const ext = openServiceExtensions(platform, opts);
  const app = await buildApp({ deps: platform, plugins: ext.plugins, logger: false });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    app,
    platform,
    ext,
    url,
    async close() {
      await app.close();
      await ext.close();
      await platform.close();
      if (!opts.storageDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
