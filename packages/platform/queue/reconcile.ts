// Postgres is the source of truth for jobs; BullMQ only carries them to workers. When Redis loses its data (restarted
// without persistence, failed over, flushed), jobs that Postgres says are queued or running have no BullMQ entry and
// would never run. The reconciler compares the two and repairs BullMQ, idempotently (the BullMQ job id is the row id,
// so adding a job that exists is a no-op, and two API replicas reconciling at once add it once):
//
//   row queued|running, BullMQ entry waiting/delayed/prioritized/active  → fine (an active job whose worker died is
//                                                                         BullMQ's stalled check's business)
//   row queued|running, no BullMQ entry, no live lease                   → re-enqueued
//   row running,        no BullMQ entry, lease held (job-lease.ts)       → left alone: a worker really runs it
//   row queued|running, BullMQ completed, no lease                       → stale entry replaced, re-enqueued (BullMQ
//                                                                         finished a copy, e.g. an old worker's after a
//                                                                         wipe, while the row still needs a run)
//   row queued|running, BullMQ failed, no lease                          → row failed (BullMQ gave up, e.g. its worker
//                                                                         died more often than maxStalledCount)
//   row succeeded|failed|cancelled                                       → not looked at
//
// Runs at API start, every RECONCILE_INTERVAL_MS, and whenever the queue connection becomes ready again (a Redis
// restart is exactly when entries go missing).
import type { Redis } from 'ioredis';
import type { Db } from '../db/client.js';
import type { JobLifecycle } from '../jobs/lifecycle.js';
import type { Device } from './catalogue.js';
import { heldJobLeases } from './job-lease.js';
import type { CompressQueues } from './queues.js';
import { DependencyUnavailableError } from './queues.js';
import { rateLimitedErrorLog } from './redis.js';

export interface ReconcileDeps {
  db: Db;
  redis: Redis;
  queues: CompressQueues;
  jobs: JobLifecycle;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void };
}

export interface ReconcileResult {
  /** Rows queued or running in Postgres. */
  checked: number;
  /** Re-enqueued because their BullMQ entry was missing (or stale). */
  requeued: string[];
  /** Running with no BullMQ entry, but leased by a live worker: left alone. */
  runningElsewhere: string[];
  /** Marked failed because BullMQ had failed them while the row was still active. */
  failed: string[];
}

const PAGE = 500;
const DEVICES = new Set<string>(['cpu', 'gpu']);

/** One pass over every queued/running row. Throws DependencyUnavailableError while Redis is not ready. */
export async function reconcileQueue(deps: ReconcileDeps): Promise<ReconcileResult> {
  const { db, queues, log } = deps;
  const result: ReconcileResult = { checked: 0, requeued: [], runningElsewhere: [], failed: [] };
  // Oldest first, so that jobs re-enqueued after a wipe keep their submission order.
  let after: { createdAt: Date; id: string } | undefined;
  for (;;) {
    if (deps.redis.status !== 'ready') throw new DependencyUnavailableError(`redis is ${deps.redis.status}`);
    const rows = await db.job.findMany({
      where: {
        state: { in: ['queued', 'running'] },
        ...(after
          ? { OR: [{ createdAt: { gt: after.createdAt } }, { createdAt: after.createdAt, id: { gt: after.id } }] }
          : {}),
      },
      select: { id: true, tenantId: true, queue: true, state: true, createdAt: true },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
      take: PAGE,
    });
    if (rows.length === 0) break;
    after = rows[rows.length - 1];
    result.checked += rows.length;

    const suspects: { row: (typeof rows)[number]; bull: 'unknown' | 'completed' | 'failed' }[] = [];
    for (const row of rows) {
      const device: Device = DEVICES.has(row.queue) ? (row.queue as Device) : 'cpu';
      const bull = await queues.byDevice[device].getJobState(row.id);
      if (bull === 'unknown' || bull === 'completed' || bull === 'failed') suspects.push({ row, bull });
    }
    if (suspects.length === 0) continue;
    const leased = await heldJobLeases(
      db,
      suspects.map((s) => s.row.id),
    );

    for (const { row, bull } of suspects) {
      if (leased.has(row.id)) {
        result.runningElsewhere.push(row.id);
        continue;
      }
      // Re-read: the row may have finished since the page was read (then BullMQ is right and nothing is to do).
      const now = await db.job.findUnique({ where: { id: row.id }, select: { state: true } });
      if (!now || (now.state !== 'queued' && now.state !== 'running')) continue;
      const device: Device = DEVICES.has(row.queue) ? (row.queue as Device) : 'cpu';
      if (bull === 'failed') {
        const error = { code: 'internal', message: 'the job was abandoned by its workers; see the worker log' };
        if (await deps.jobs.finish(row.id, { state: 'failed', error })) {
          result.failed.push(row.id);
          log.warn({ jobId: row.id }, 'reconcile: BullMQ failed the job while its row was active; marked failed');
        }
        continue;
      }
      if (bull === 'completed') {
        // A completed entry under this id would turn the add below into a no-op.
        await (await queues.byDevice[device].getJob(row.id))?.remove().catch(() => {});
      }
      await queues.enqueue(device, { jobId: row.id, tenantId: row.tenantId });
      result.requeued.push(row.id);
      log.warn({ jobId: row.id, state: row.state, bullmq: bull }, 'reconcile: job missing from the queue; re-enqueued');
    }
  }
  return result;
}

export interface RunningReconciler {
  /** Runs a pass now (or joins the one in flight). */
  runOnce(): Promise<ReconcileResult>;
  stop(): Promise<void>;
}

/**
 * Reconciles now, every `intervalMs` (0: no timer), and each time the queue connection becomes ready again. Passes
 * never overlap; a failed pass (Redis or Postgres down) is logged, rate-limited, and the next trigger tries again.
 */
export function startReconciler(deps: ReconcileDeps, opts: { intervalMs: number }): RunningReconciler {
  const errors = rateLimitedErrorLog('queue reconciler', { sink: (line) => deps.log.warn({}, line) });
  let inFlight: Promise<ReconcileResult> | undefined;
  let stopped = false;
  const runOnce = () =>
    (inFlight ??= reconcileQueue(deps).finally(() => {
      inFlight = undefined;
    }));
  const trigger = () => {
    if (stopped) return;
    runOnce().then(
      (r) => {
        errors.recovered();
        if (r.requeued.length || r.failed.length) {
          deps.log.info({ requeued: r.requeued.length, failed: r.failed.length }, 'reconcile: queue repaired');
        }
      },
      (e) => errors.error(e),
    );
  };
  deps.redis.on('ready', trigger);
  const timer = opts.intervalMs > 0 ? setInterval(trigger, opts.intervalMs) : undefined;
  timer?.unref();
  // Not ready yet (the API is starting): the 'ready' event runs the first pass.
  if (deps.redis.status === 'ready') trigger();
  return {
    runOnce,
    async stop() {
      stopped = true;
      clearInterval(timer);
      deps.redis.off('ready', trigger);
      await inFlight?.catch(() => {});
    },
  };
}
