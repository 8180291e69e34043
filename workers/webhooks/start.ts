// The webhook delivery worker (with its dispatcher sweep) as a worker process runs it, in one call for
// `onnx-compress worker` and `start`. Finished jobs are announced by every process's platform (jobs/notify.ts),
// not here: an API without a worker notifies as well.
import type { Platform } from '../../packages/platform/platform.js';
import { startWebhookWorker, type WebhookWorkerDeps } from './worker.js';

export interface WebhookSide {
  close(): Promise<void>;
}

export async function startWebhookSide(
  platform: Pick<Platform, 'config' | 'db'>,
  opts: { log?: WebhookWorkerDeps['log'] } = {},
): Promise<WebhookSide> {
  const config = platform.config.webhooks;
  const prefix = platform.config.queuePrefix;
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
    },
  };
}
