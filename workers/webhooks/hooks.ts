// What a process that finishes jobs (the compress worker; the API when it cancels a queued job) adds so that
// webhooks and live streams learn about it at once: a job-finished hook that publishes the final state on the job's
// events channel and creates + queues the webhook delivery. The webhook worker's sweep remains the safety net.
import type { Redis } from 'ioredis';
import type { Db } from '../../packages/platform/db/client.js';
import { registerJobFinishedHook } from '../../packages/platform/events/job-finished.js';
import { publishJobState } from '../../packages/platform/job-events/bus.js';
import type { WebhookConfig } from '../../packages/platform/config/config.js';
import { dispatchJob } from '../../packages/platform/webhooks/dispatcher.js';
import { createWebhookQueue } from '../../packages/platform/webhooks/queue.js';

export interface FinishedHookDeps {
  db: Db;
  redis: Redis;
  /** The service's QUEUE_PREFIX. */
  prefix: string;
  config: WebhookConfig;
}

/** Registers the hook; the returned function removes it and closes the queue handle. */
export function registerWebhookAndLiveHooks(deps: FinishedHookDeps): () => Promise<void> {
  const queue = createWebhookQueue(deps.redis, deps.prefix, 'queue webhooks (job-finished hook)');
  const dispatch = {
    db: deps.db,
    queue,
    publicBaseUrl: deps.config.publicBaseUrl,
    retryScheduleMs: deps.config.retryScheduleMs,
    retryJitter: deps.config.retryJitter,
  };
  const remove = registerJobFinishedHook(async (e) => {
    await publishJobState(deps.redis, deps.prefix, e.jobId, e.state, e.error ?? null);
    await dispatchJob(dispatch, e.jobId);
  });
  return async () => {
    remove();
    await queue.close();
  };
}
