// Opens every platform adapter a process needs (Postgres with migrations applied, Redis, queues, storage, the job
// lifecycle and who hears about finished jobs) and closes them in reverse order. Shared by `serve`, `worker` and
// `start`: each of them can finish a job (the API cancels queued ones), so each notifies the same way.
import type { Redis } from 'ioredis';
import type { Config } from './config/config.js';
import { createDb, ensureDefaultTenant, type Db } from './db/client.js';
import { migrate } from './db/migrate.js';
import { JobEvents, type ErrorLog } from './jobs/events.js';
import { JobLifecycle } from './jobs/lifecycle.js';
import { notifyWhenJobsFinish } from './jobs/notify.js';
import { CompressQueues } from './queue/queues.js';
import { createRedis } from './queue/redis.js';
import { createStorage, type Storage } from './storage/storage.js';

export interface Platform {
  config: Config;
  db: Db;
  redis: Redis;
  queues: CompressQueues;
  storage: Storage;
  /** The one writer of job states; announces finished jobs on `jobs.events`. */
  jobs: JobLifecycle;
  close(): Promise<void>;
}

export async function openPlatform(
  config: Config,
  opts: { migrate?: boolean; log?: (msg: string) => void; errorLog?: ErrorLog } = {},
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
  const jobs = new JobLifecycle(db, new JobEvents(opts.errorLog));
  const stopNotifying = notifyWhenJobsFinish(jobs.events, {
    db,
    redis,
    prefix: config.queuePrefix,
    webhooks: config.webhooks,
  });
  return {
    config,
    db,
    redis,
    queues,
    storage,
    jobs,
    async close() {
      await stopNotifying();
      await queues.close();
      redis.disconnect();
      await db.$disconnect();
    },
  };
}
