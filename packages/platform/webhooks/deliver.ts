// The delivery processor: one attempt per call. Resolve and check the target at send time, sign, POST to the checked
// address, record the attempt. 2xx → succeeded. Otherwise, while the schedule has retries left, throw
// RetryDeliveryError carrying the delay (BullMQ's custom backoff returns it); after the last one → failed. An SSRF
// refusal or an invalid URL is final at once (retrying cannot change the policy's answer for a literal, and a name
// that resolves privately is refused until the operator allow-lists it).
import type { Job } from 'bullmq';
import type { PrismaClient } from '../../../prisma/generated/client.js';
import type { AllowList } from './address-policy.js';
import { claimAttemptNumber, recordAttempt, type AttemptRecord } from './deliveries.js';
import { postToTarget } from './post.js';
import type { WebhookJobData } from './queue.js';
import { resolveWebhookTarget, type Lookup } from './resolve-target.js';
import { retryDelayMs } from './retry-schedule.js';
import { signWebhook } from './sign.js';

export interface DeliverDeps {
  db: PrismaClient;
  allowList: AllowList;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  /** Injectable DNS for tests; the system resolver otherwise. */
  lookup?: Lookup;
  /** One line per attempt (delivered / failed / refused); never the secret, the signature or the URL's path. */
  log?: DeliveryLog;
}

export interface DeliveryLog {
  info(o: object, msg?: string): void;
  warn(o: object, msg?: string): void;
}

/** The receiver's host only: a webhook URL's userinfo, path or query may carry a token. */
function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '(invalid url)';
  }
}

/** Thrown to make BullMQ retry after exactly `delayMs` (read by the worker's backoff strategy). */
export class RetryDeliveryError extends Error {
  override readonly name = 'RetryDeliveryError';
  constructor(
    message: string,
    readonly delayMs: number,
  ) {
    super(message);
  }
}

export type AttemptOutcome = 'succeeded' | 'retrying' | 'failed' | 'skipped';

export async function deliverOnce(deps: DeliverDeps, job: Job<WebhookJobData>): Promise<AttemptOutcome> {
  const { db } = deps;
  const delivery = await db.webhookDelivery.findUnique({ where: { id: job.data.deliveryId } });
  // Gone (tenant or job deleted) or already settled by an earlier run of this queue job: nothing to send.
  if (!delivery || delivery.status !== 'pending') return 'skipped';
  const number = await claimAttemptNumber(db, delivery.id);
  const startedAt = new Date();
  const retriesLeft = (job.opts.attempts ?? 1) - (job.attemptsMade + 1);

  const about = {
    deliveryId: delivery.id,
    jobId: delivery.jobId,
    event: delivery.eventType,
    host: hostOf(delivery.url),
    attempt: number,
  };
  const finish = async (
    a: Omit<AttemptRecord, 'number' | 'startedAt'>,
    retryable: boolean,
    refused = false,
  ): Promise<AttemptOutcome> => {
    const attempt = { ...a, number, startedAt };
    const line = { ...about, responseStatus: a.responseStatus, latencyMs: a.latencyMs };
    if (a.status === 'succeeded') {
      await recordAttempt(db, delivery, attempt, { status: 'succeeded' });
      deps.log?.info(line, 'webhook delivered');
      return 'succeeded';
    }
    const what = refused ? 'webhook refused' : 'webhook attempt failed';
    if (!retryable || retriesLeft <= 0) {
      await recordAttempt(db, delivery, attempt, { status: 'failed' });
      deps.log?.warn({ ...line, error: a.error, final: true }, what);
      return 'failed';
    }
    const delayMs = retryDelayMs(job.data.scheduleMs, job.attemptsMade + 1, job.data.jitter);
    await recordAttempt(db, delivery, attempt, { status: 'pending', nextAttemptAt: new Date(Date.now() + delayMs) });
    deps.log?.warn({ ...line, error: a.error, retryInMs: delayMs }, what);
    throw new RetryDeliveryError(a.error ?? `attempt ${number} failed`, delayMs);
  };

  const resolved = await resolveWebhookTarget(delivery.url, deps.allowList, deps.lookup);
  if (!resolved.ok) {
    return finish(
      {
        status: 'failed',
        responseStatus: null,
        latencyMs: 0,
        error: `${resolved.code}: ${resolved.message}`,
        responseBody: null,
      },
      resolved.retryable,
      true,
    );
  }
  if (!delivery.secret) {
    return finish(
      {
        status: 'failed',
        responseStatus: null,
        latencyMs: 0,
        error: 'delivery has no signing secret',
        responseBody: null,
      },
      false,
    );
  }
  const body = JSON.stringify(delivery.payload);
  const headers = signWebhook(delivery.secret, delivery.eventId, startedAt, body);
  const res = await postToTarget(resolved.target, { ...headers }, body, {
    connectTimeoutMs: deps.connectTimeoutMs,
    responseTimeoutMs: deps.responseTimeoutMs,
  });
  const ok = res.status !== null && res.status >= 200 && res.status < 300;
  return finish(
    {
      status: ok ? 'succeeded' : 'failed',
      responseStatus: res.status,
      latencyMs: res.latencyMs,
      error: ok ? null : (res.error ?? `receiver answered HTTP ${res.status}`),
      responseBody: res.body,
    },
    true,
  );
}
