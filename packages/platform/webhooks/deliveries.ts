// Webhook deliveries in Postgres: one row per (job, event) with the payload, the signing secret and a summary of the
// last attempt; one webhook_attempts row per HTTP attempt. Every read is scoped to the caller's tenant.
import type { PrismaClient } from '../../../prisma/generated/client.js';
import { buildJobEvent, TERMINAL_EVENT_BY_STATE } from './event.js';
import { newWebhookMessageId } from './sign.js';

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed';

export interface AttemptRecord {
  number: number;
  status: 'succeeded' | 'failed';
  responseStatus: number | null;
  latencyMs: number;
  error: string | null;
  responseBody: string | null;
  startedAt: Date;
}

export interface DeliveryView {
  id: string;
  /** The Standard Webhooks `webhook-id`, the same on every attempt. */
  webhookId: string;
  eventType: string;
  url: string;
  status: DeliveryStatus;
  attemptCount: number;
  responseStatus: number | null;
  error: string | null;
  nextAttemptAt: string | null;
  createdAt: string;
  deliveredAt: string | null;
  redeliveries: number;
  attempts: (Omit<AttemptRecord, 'startedAt'> & { startedAt: string })[];
}

function isUniqueViolation(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: string }).code === 'P2002';
}

/**
 * Creates the delivery for a finished job's terminal event, once: concurrent callers (several dispatchers) race on
 * the unique dedupe key and all get the same row. Null when the job has no webhook or is not finished.
 */
export async function createJobDelivery(
  db: PrismaClient,
  jobId: string,
  publicBaseUrl: string,
): Promise<{ id: string; created: boolean } | null> {
  const job = await db.job.findUnique({ where: { id: jobId }, include: { artifacts: true } });
  if (!job || !job.webhookUrl) return null;
  const eventType = TERMINAL_EVENT_BY_STATE[job.state];
  if (!eventType) return null;
  const dedupeKey = `${job.id}:${eventType}`;
  const existing = await db.webhookDelivery.findUnique({ where: { dedupeKey }, select: { id: true } });
  if (existing) return { id: existing.id, created: false };
  const payload = buildJobEvent(
    {
      id: job.id,
      state: job.state,
      metrics: (job.metrics as Record<string, unknown> | null) ?? null,
      artifacts: job.artifacts.map((a) => ({ name: a.name, sha256: a.sha256 })),
      error: (job.error as { code: string; message: string } | null) ?? null,
    },
    publicBaseUrl,
    job.finishedAt ?? new Date(),
  );
  try {
    const row = await db.webhookDelivery.create({
      data: {
        tenantId: job.tenantId,
        jobId: job.id,
        eventId: newWebhookMessageId(),
        eventType,
        url: job.webhookUrl,
        secret: job.webhookSecret,
        payload: payload as object,
        attempt: 0,
        status: 'pending',
        dedupeKey,
        nextAttemptAt: new Date(),
      },
      select: { id: true },
    });
    return { id: row.id, created: true };
  } catch (e) {
    if (!isUniqueViolation(e)) throw e;
    const row = await db.webhookDelivery.findUniqueOrThrow({ where: { dedupeKey }, select: { id: true } });
    return { id: row.id, created: false };
  }
}

/** Claims the next attempt number atomically (safe when a stalled attempt is re-run elsewhere). */
export async function claimAttemptNumber(db: PrismaClient, deliveryId: string): Promise<number> {
  const rows = await db.$queryRaw<{ attempt: number }[]>`
    UPDATE webhook_deliveries SET attempt = attempt + 1 WHERE id = ${deliveryId}::uuid RETURNING attempt`;
  if (rows.length === 0) throw new Error(`webhook delivery ${deliveryId} disappeared`);
  return rows[0].attempt;
}

export async function recordAttempt(
  db: PrismaClient,
  delivery: { id: string; tenantId: string },
  attempt: AttemptRecord,
  next: { status: 'succeeded' } | { status: 'failed' } | { status: 'pending'; nextAttemptAt: Date },
): Promise<void> {
  await db.$transaction([
    db.webhookAttempt.create({
      data: {
        tenantId: delivery.tenantId,
        deliveryId: delivery.id,
        number: attempt.number,
        status: attempt.status,
        responseStatus: attempt.responseStatus,
        latencyMs: attempt.latencyMs,
        error: attempt.error,
        responseBody: attempt.responseBody,
        startedAt: attempt.startedAt,
      },
    }),
    db.webhookDelivery.update({
      where: { id: delivery.id },
      data: {
        status: next.status,
        responseStatus: attempt.responseStatus,
        error: attempt.error,
        nextAttemptAt: next.status === 'pending' ? next.nextAttemptAt : null,
        ...(next.status === 'succeeded' ? { deliveredAt: attempt.startedAt } : {}),
      },
    }),
  ]);
}

function view(row: {
  id: string;
  eventId: string;
  eventType: string;
  url: string;
  status: string;
  attempt: number;
  responseStatus: number | null;
  error: string | null;
  nextAttemptAt: Date | null;
  createdAt: Date;
  deliveredAt: Date | null;
  redeliveries: number;
  attempts: (Omit<AttemptRecord, 'status'> & { status: string })[];
}): DeliveryView {
  return {
    id: row.id,
    webhookId: row.eventId,
    eventType: row.eventType,
    url: row.url,
    status: row.status as DeliveryStatus,
    attemptCount: row.attempts.length,
    responseStatus: row.responseStatus,
    error: row.error,
    nextAttemptAt: row.nextAttemptAt?.toISOString() ?? null,
    createdAt: row.createdAt.toISOString(),
    deliveredAt: row.deliveredAt?.toISOString() ?? null,
    redeliveries: row.redeliveries,
    attempts: row.attempts.map((a) => ({
      number: a.number,
      status: a.status as 'succeeded' | 'failed',
      responseStatus: a.responseStatus,
      latencyMs: a.latencyMs,
      error: a.error,
      responseBody: a.responseBody,
      startedAt: a.startedAt.toISOString(),
    })),
  };
}

const withAttempts = { attempts: { orderBy: { number: 'asc' as const } } };

/** The job's deliveries, newest first; null when the job does not exist for this tenant. */
export async function listJobDeliveries(
  db: PrismaClient,
  tenantId: string,
  jobId: string,
): Promise<DeliveryView[] | null> {
  const job = await db.job.findFirst({ where: { id: jobId, tenantId }, select: { id: true } });
  if (!job) return null;
  const rows = await db.webhookDelivery.findMany({
    where: { jobId, tenantId },
    include: withAttempts,
    orderBy: { createdAt: 'desc' },
  });
  return rows.map(view);
}

export async function getDelivery(db: PrismaClient, tenantId: string, jobId: string, deliveryId: string) {
  const row = await db.webhookDelivery.findFirst({
    where: { id: deliveryId, jobId, tenantId },
    include: withAttempts,
  });
  return row ? view(row) : null;
}

/**
 * Starts the delivery over (same webhook-id, full retry schedule again). Returns the run number to key the queue job
 * with, or null when the delivery is not this tenant's; `in-progress` when a run is still pending.
 */
export async function markForRedelivery(
  db: PrismaClient,
  tenantId: string,
  jobId: string,
  deliveryId: string,
): Promise<{ ok: true; run: number } | { ok: false; code: 'not-found' | 'in-progress' }> {
  const row = await db.webhookDelivery.findFirst({ where: { id: deliveryId, jobId, tenantId } });
  if (!row) return { ok: false, code: 'not-found' };
  const updated = await db.webhookDelivery.updateManyAndReturn({
    where: { id: deliveryId, status: { not: 'pending' } },
    data: { status: 'pending', redeliveries: { increment: 1 }, nextAttemptAt: new Date() },
  });
  if (updated.length === 0) return { ok: false, code: 'in-progress' };
  return { ok: true, run: updated[0].redeliveries };
}
