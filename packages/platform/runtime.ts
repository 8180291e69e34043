// Opens every platform adapter a process needs (Postgres with migrations applied, Redis, queues, storage) and
// closes them in reverse order. Shared by `serve`, `worker` and `start`.
import type { Redis } from 'ioredis';
import type { Config } from './config/config.js';
import { createDb, ensureDefaultTenant, type Db } from './db/client.js';
import { migrate } from './db/migrate.js';
import { CompressQueues } from './queue/queues.js';
import { createRedis } from './queue/redis.js';
import { createStorage, type Storage } from './storage/storage.js';

export interface Platform {
  config: Config;
  db: Db;
  redis: Redis;
  queues: CompressQueues;
  storage: Storage;
  close(): Promise<void>;
}

export async function openPlatform(
  config: Config,
  opts: { migrate?: boolean; log?: (msg: string) => void } = {},
): Promise<Platform> {
  if (opts.migrate ?? true) {
    const applied = await migrate(config.databaseUrl);
    if (applied.length) opts.log?.(`applied migrations: ${applied.join(', ')}`);
  }
  await ensureDefaultTenant(config.databaseUrl);
  const db = createDb(config.databaseUrl);
  const redis = createRedis(config.redisUrl, 'queue');
  const queues = new CompressQueues(redis, config.queuePrefix, config.jobAttempts, config.retryBackoffMs);
  const storage = await createStorage(config.storage, config.workDir);
  return {
    config,
    db,
    redis,
    queues,
    storage,
    async close() {
      await queues.close();
      redis.disconnect();
      await db.$disconnect();
    },
  };
}
