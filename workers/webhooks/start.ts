// Everything webhook- and live-event-related a worker process runs, in one call for `onnx-compress worker` and
// `start`: the webhook delivery worker (with its sweep) and the job-finished hooks (final state on the job's events
// channel; the delivery created and queued at once).
import type { Platform } from '../../packages/platform/runtime.js';
import { registerWebhookAndLiveHooks } from './hooks.js';
import { startWebhookWorker, type WebhookWorkerDeps } from './worker.js';

export interface WebhookSide {
  close(): Promise<void>;
}

export async function startWebhookSide(
  platform: Pick<Platform, 'config' | 'db' | 'redis'>,
  opts: { log?: WebhookWorkerDeps['log'] } = {},
): Promise<WebhookSide> {
  const config = platform.config.webhooks;
  const prefix = platform.config.queuePrefix;
  const removeHooks = registerWebhookAndLiveHooks({ db: platform.db, redis: platform.redis, prefix, config });
  const delivery = startWebhookWorker({
    db: platform.db,
    // Options, not a client: BullMQ opens (and closes) its own blocking connection.
    connection: { url: platform.config.redisUrl, maxRetriesPerRequest: null },
    prefix,
    config,
    log: opts.log,
  });
  await delivery.worker.waitUntilReady();
  return {
    async close() {
      await delivery.close();
      await removeHooks();
    },
  };
}
