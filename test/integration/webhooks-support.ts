// Shared by the webhook/auth integration tests: a throwaway database (migrated like production) and a unique BullMQ
// prefix per test file, both removed at the end. Real Postgres and Redis; nothing mocked.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createDb, type Db } from '../../packages/platform/db/client.js';
import { migrate } from '../../packages/platform/db/migrate.js';
import { adminQuery, connectionParts } from '../../packages/platform/db/schema-engine.js';

export const BASE_DATABASE_URL = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/onnx_compress';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface TestDatabase {
  url: string;
  db: Db;
  drop(): Promise<void>;
}

export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const name = `oc_test_${label}_${randomBytes(4).toString('hex')}`;
  const url = new URL(BASE_DATABASE_URL);
  url.pathname = `/${name}`;
  await migrate(url.toString());
  const db = createDb(url.toString(), 4);
  return {
    url: url.toString(),
    db,
    async drop() {
      await db.$disconnect();
      await adminQuery(connectionParts(url.toString()), `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

export function uniquePrefix(label: string): string {
  return `oc_test_${label}_${randomBytes(4).toString('hex')}`;
}

/** Deletes every Redis key under a BullMQ prefix. */
export async function dropRedisPrefix(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A tenant, a model row and a finished job pointing its webhook at `url` (the rows a real job leaves behind). */
export async function seedFinishedJob(
  db: Db,
  opts: { url: string; secret: string; state?: 'succeeded' | 'failed' | 'cancelled'; tenantName?: string },
) {
  const tenant = await db.tenant.create({ data: { name: opts.tenantName ?? `t-${randomBytes(3).toString('hex')}` } });
  const model = await db.model.create({
    data: {
      tenantId: tenant.id,
      name: 'm.onnx',
      sha256: 'aa'.repeat(32),
      sizeBytes: 1234n,
      storageKey: 'models/x',
      inspection: {},
    },
  });
  const state = opts.state ?? 'succeeded';
  const job = await db.job.create({
    data: {
      tenantId: tenant.id,
      modelId: model.id,
      recipe: { method: 'magnitude' },
      queue: 'cpu',
      state,
      progress: 1,
      metrics: state === 'succeeded' ? { sparsity: 0.5 } : undefined,
      error: state === 'failed' ? { code: 'bad-model', message: 'no weights' } : undefined,
      webhookUrl: opts.url,
      webhookSecret: opts.secret,
      finishedAt: new Date(),
    },
  });
  if (state === 'succeeded') {
    await db.artifact.create({
      data: {
        tenantId: tenant.id,
        jobId: job.id,
        name: 'model.onnx',
        sizeBytes: 10n,
        sha256: 'bb'.repeat(32),
        storageKey: 'k',
      },
    });
  }
  return { tenant, model, job };
}
