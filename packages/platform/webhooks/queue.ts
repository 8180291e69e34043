// The `webhooks` BullMQ queue: one queue job per delivery run. Retries are BullMQ attempts; the delay before each
// comes from the retry schedule carried in the job (so a config change does not reshape runs already scheduled) and
// is chosen by the processor, which records it as next_attempt_at before handing it to BullMQ.
import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import { logErrors } from '../queue/redis.js';

export const WEBHOOK_QUEUE = 'webhooks';
/** Name of the custom backoff strategy the webhook worker registers. */
export const WEBHOOK_BACKOFF = 'webhook-schedule';

export interface WebhookJobData {
  deliveryId: string;
  /** Delays between attempts, ms; attempts = scheduleMs.length + 1. */
  scheduleMs: number[];
  jitter: number;
}

/** The queue, with a rate-limited 'error' listener (BullMQ re-emits connection errors; unheard, each is logged). */
export function createWebhookQueue(
  connection: ConnectionOptions,
  prefix: string,
  label = `queue ${WEBHOOK_QUEUE}`,
): Queue<WebhookJobData> {
  const queue = new Queue<WebhookJobData>(WEBHOOK_QUEUE, { connection, prefix });
  logErrors(queue, label);
  return queue;
}

/**
 * Queues a delivery run. The queue job id is derived from the delivery (and the redelivery run), so enqueuing the
 * same run twice (dispatchers racing, a sweep re-queuing) is a no-op while the first is kept.
 */
export async function enqueueDelivery(
  queue: Queue<WebhookJobData>,
  deliveryId: string,
  run: number,
  schedule: { scheduleMs: number[]; jitter: number },
): Promise<void> {
  const opts: JobsOptions = {
    jobId: run === 0 ? deliveryId : `${deliveryId}.r${run}`,
    attempts: schedule.scheduleMs.length + 1,
    backoff: { type: WEBHOOK_BACKOFF },
    // Keep finished runs long enough that a re-enqueue of the same run stays a no-op.
    removeOnComplete: { age: 7 * 24 * 3600 },
    removeOnFail: { age: 30 * 24 * 3600 },
  };
  await queue.add('deliver', { deliveryId, scheduleMs: schedule.scheduleMs, jitter: schedule.jitter }, opts);
}
