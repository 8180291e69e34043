// The webhook delivery worker: consumes the `webhooks` queue (one attempt per processor call, retries on the
// configured schedule) and runs the dispatcher sweep that turns finished jobs into deliveries. Any number of these
// can run; the dedupe key and queue job ids keep each event delivered by one run at a time.
import { Worker, type ConnectionOptions } from 'bullmq';
import type { PrismaClient } from '../../prisma/generated/client.js';
import type { WebhookConfig } from '../../packages/platform/config/config.js';
import { deliverOnce, RetryDeliveryError } from '../../packages/platform/webhooks/deliver.js';
import { sweepFinishedJobs, type DispatchDeps } from '../../packages/platform/webhooks/dispatcher.js';
import { createWebhookQueue, WEBHOOK_QUEUE, type WebhookJobData } from '../../packages/platform/webhooks/queue.js';
import { logErrors } from '../../packages/platform/queue/redis.js';
import { retryDelayMs } from '../../packages/platform/webhooks/retry-schedule.js';
import type { Lookup } from '../../packages/platform/webhooks/resolve-target.js';

export interface WebhookWorkerDeps {
  db: PrismaClient;
  connection: ConnectionOptions;
  /** BullMQ key prefix (the service's QUEUE_PREFIX). */
  prefix: string;
  config: WebhookConfig;
  log?: {
    info(o: object, msg?: string): void;
    warn(o: object, msg?: string): void;
    error(o: object, msg?: string): void;
  };
  lookup?: Lookup;
}

export interface RunningWebhookWorker {
  worker: Worker<WebhookJobData>;
  dispatch: DispatchDeps;
  /** Runs one sweep now (tests; also what the timer calls). */
  sweep(): Promise<number>;
  close(): Promise<void>;
}

export function startWebhookWorker(deps: WebhookWorkerDeps): RunningWebhookWorker {
  const { config } = deps;
  const queue = createWebhookQueue(deps.connection, deps.prefix);
  const worker = new Worker<WebhookJobData>(
    WEBHOOK_QUEUE,
    (job) =>
      deliverOnce(
        {
          db: deps.db,
          allowList: config.allowList,
          connectTimeoutMs: config.connectTimeoutMs,
          responseTimeoutMs: config.responseTimeoutMs,
          lookup: deps.lookup,
          log: deps.log,
        },
        job,
      ),
    {
      connection: deps.connection,
      prefix: deps.prefix,
      concurrency: config.concurrency,
      settings: {
        // The processor picked (and recorded) the delay; an unexpected error falls back to the schedule.
        backoffStrategy: (attemptsMade, _type, err, job) =>
          err instanceof RetryDeliveryError
            ? err.delayMs
            : retryDelayMs((job?.data as WebhookJobData | undefined)?.scheduleMs ?? [1000], attemptsMade, 0.2),
      },
    },
  );
  // Unheard, BullMQ console.errors every reconnect attempt while Redis is down: log them rate-limited instead.
  logErrors(worker, `worker ${WEBHOOK_QUEUE}`);
  worker.on('failed', (job, err) => {
    if (!(err instanceof RetryDeliveryError))
      deps.log?.error({ err, deliveryId: job?.data.deliveryId }, 'webhook attempt crashed');
  });
  const dispatch: DispatchDeps = {
    db: deps.db,
    queue,
    publicBaseUrl: config.publicBaseUrl,
    retryScheduleMs: config.retryScheduleMs,
    retryJitter: config.retryJitter,
  };
  let sweeping: Promise<number> | null = null;
  const sweep = () => {
    // One sweep at a time per process; overlapping timers would only repeat the same queries.
    sweeping ??= sweepFinishedJobs(dispatch).finally(() => (sweeping = null));
    return sweeping;
  };
  const timer = setInterval(() => {
    sweep().catch((err) => deps.log?.warn({ err }, 'webhook sweep failed'));
  }, config.sweepIntervalMs);
  timer.unref();
  return {
    worker,
    dispatch,
    sweep,
    async close() {
      clearInterval(timer);
      await sweeping?.catch(() => undefined);
      await worker.close();
      await queue.close();
    },
  };
}
