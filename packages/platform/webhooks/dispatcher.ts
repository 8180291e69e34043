// Turns finished jobs into deliveries without the compress worker having to remember to: a transactional-outbox
// style sweep over Postgres (the source of truth for job state). A job that reached succeeded/failed/cancelled with a
// webhook URL and no delivery for that event gets one, and it is queued. Also re-queues deliveries left pending
// past their due time (a process died between creating the row and queuing it). `dispatchJob` does the same for
// one job at once, for callers that know a job just finished (lower latency than waiting for the sweep).
import type { Queue } from 'bullmq';
import type { PrismaClient } from '../../../prisma/generated/client.js';
import { createJobDelivery } from './deliveries.js';
import { enqueueDelivery, type WebhookJobData } from './queue.js';

export interface DispatchDeps {
  db: PrismaClient;
  queue: Queue<WebhookJobData>;
  publicBaseUrl: string;
  retryScheduleMs: number[];
  retryJitter: number;
}

/** Jobs finished longer ago than this are not swept (their events are history, not news). */
const SWEEP_WINDOW = '7 days';
/** A pending delivery this far past due is assumed to have lost its queue job and is queued again. */
const STALE_PENDING_MS = 60_000;
const BATCH = 100;

export async function dispatchJob(deps: DispatchDeps, jobId: string): Promise<string | null> {
  const d = await createJobDelivery(deps.db, jobId, deps.publicBaseUrl);
  if (!d) return null;
  // Queue even when the row already existed: the job id makes this a no-op if the run is already queued.
  await enqueueDelivery(deps.queue, d.id, 0, { scheduleMs: deps.retryScheduleMs, jitter: deps.retryJitter });
  return d.id;
}

export async function sweepFinishedJobs(deps: DispatchDeps): Promise<number> {
  const rows = await deps.db.$queryRawUnsafe<{ id: string }[]>(
    `SELECT j.id FROM jobs j
      WHERE j.webhook_url IS NOT NULL
        AND j.state IN ('succeeded', 'failed', 'cancelled')
        AND j.finished_at > now() - interval '${SWEEP_WINDOW}'
        AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.dedupe_key = j.id::text || ':job.' || j.state::text)
      ORDER BY j.finished_at LIMIT ${BATCH}`,
  );
  let n = 0;
  for (const r of rows) if (await dispatchJob(deps, r.id)) n++;
  const stale = await deps.db.webhookDelivery.findMany({
    where: { status: 'pending', nextAttemptAt: { lt: new Date(Date.now() - STALE_PENDING_MS) } },
    select: { id: true, redeliveries: true },
    take: BATCH,
  });
  for (const s of stale) {
    await enqueueDelivery(deps.queue, s.id, s.redeliveries, {
      scheduleMs: deps.retryScheduleMs,
      jitter: deps.retryJitter,
    });
  }
  return n;
}
