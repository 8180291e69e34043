// Who hears that a job finished, in every process that can finish one (API, worker, both): the job's live-events
// channel gets the final state (every API process's SSE streams of that job end at once), and the webhook dispatcher
// creates and queues the delivery (any worker process's webhook worker sends it). The dispatcher's sweep and the
// streams' row re-reads remain the safety nets for a process that dies between the commit and these.
import type { Redis } from 'ioredis';
import type { WebhookConfig } from '../config/webhooks.js';
import type { Db } from '../db/client.js';
import { publishJobState } from '../job-events/bus.js';
import { dispatchJob } from '../webhooks/dispatcher.js';
import { createWebhookQueue } from '../webhooks/queue.js';
import type { JobEvents } from './events.js';

export interface NotifyDeps {
  db: Db;
  redis: Redis;
  /** The service's QUEUE_PREFIX. */
  prefix: string;
  webhooks: Pick<WebhookConfig, 'publicBaseUrl' | 'retryScheduleMs' | 'retryJitter'>;
}

/** Subscribes both listeners; the returned function removes them and closes the webhook queue handle. */
export function notifyWhenJobsFinish(events: JobEvents, deps: NotifyDeps): () => Promise<void> {
  const queue = createWebhookQueue(deps.redis, deps.prefix, 'queue webhooks (job finished)');
  const dispatch = { db: deps.db, queue, ...deps.webhooks };
  const removeLive = events.onFinished((e) => publishJobState(deps.redis, deps.prefix, e.jobId, e.state, e.error));
  const removeWebhook = events.onFinished(async (e) => void (await dispatchJob(dispatch, e.jobId)));
  return async () => {
    removeLive();
    removeWebhook();
    await queue.close();
  };
}
