// The one owner of a job's life: queued → running → succeeded | failed | cancelled (and running → queued for a
// retry). Every state change goes through here, as one conditional UPDATE (or one transaction when rows are written
// with it) whose WHERE is the state check, so two writers racing (a cancel and a commit, a stalled attempt and the
// one that took over, the reconciler and a worker) cannot both win. When a job reaches a final state, the caller
// that won — and only that one — announces it on the injected JobEvents; whoever must know (SSE streams, webhook
// deliveries) listens there, whichever process finished the job.
import { Prisma, type Db } from '../db/client.js';
import type { FinalJobState, JobError, JobEvents } from './events.js';

type ActiveState = 'queued' | 'running';

export type JobOutcome = { state: 'succeeded' } | { state: 'cancelled' } | { state: 'failed'; error: JobError };

export interface FinishOptions {
  /** States the job may finish from. @defaultValue ['queued', 'running'] */
  from?: ActiveState[];
  /**
   * The attempt (the row's `attempts` after that attempt started) that must still be the job's latest: a stalled
   * attempt failing late does not end a job another attempt has taken over since.
   */
  attempt?: number;
  /** More conditions on the row (e.g. `committedAttempt: null`). */
  where?: Prisma.JobWhereInput;
  /** More columns written with the state (metrics, committedAttempt, …). */
  data?: Prisma.JobUpdateManyMutationInput;
  /** Rows written in the same transaction, only when this call wins the state change (artifacts, metrics). */
  alsoWrite?: (tx: Prisma.TransactionClient) => Promise<unknown>;
}

const STAGE: Record<FinalJobState, string> = { succeeded: 'done', failed: 'failed', cancelled: 'cancelled' };
const ACTIVE: ActiveState[] = ['queued', 'running'];

export class JobLifecycle {
  constructor(
    private readonly db: Db,
    readonly events: JobEvents,
  ) {}

  /**
   * A worker starts an attempt: queued (or running: a retry, a takeover) → running, one more attempt counted.
   * Returns the attempt's number, or null when the job is gone or already final (e.g. cancelled since it was read).
   */
  async start(jobId: string, startedAt: Date): Promise<number | null> {
    const [row] = await this.db.job.updateManyAndReturn({
      where: { id: jobId, state: { in: ACTIVE } },
      data: { state: 'running', startedAt, attempts: { increment: 1 }, stage: 'download', error: Prisma.DbNull },
      select: { attempts: true },
    });
    return row?.attempts ?? null;
  }

  /**
   * A transient failure with attempts left: running → queued until the queue's retry runs it. Only while `attempt`
   * is still the job's latest: a stalled-but-alive attempt failing after another one took over leaves the row alone.
   */
  async requeue(jobId: string, attempt: number): Promise<boolean> {
    const r = await this.db.job.updateMany({
      where: { id: jobId, state: 'running', attempts: attempt },
      data: { state: 'queued', stage: 'retrying' },
    });
    return r.count === 1;
  }

  /**
   * Ends the job if it is still in one of `from` (and matches the options' conditions). Returns the finish time
   * when this call ended it (the event is then announced), null when the job had already moved on.
   */
  async finish(jobId: string, outcome: JobOutcome, opts: FinishOptions = {}): Promise<Date | null> {
    const finishedAt = new Date();
    const where: Prisma.JobWhereInput = {
      ...opts.where,
      id: jobId,
      state: { in: opts.from ?? ACTIVE },
      ...(opts.attempt !== undefined ? { attempts: opts.attempt } : {}),
    };
    const error = outcome.state === 'failed' ? outcome.error : undefined;
    const data: Prisma.JobUpdateManyMutationInput = {
      stage: STAGE[outcome.state],
      ...opts.data,
      state: outcome.state,
      finishedAt,
      ...(error ? { error: { ...error } } : {}),
    };
    const flip = (tx: Prisma.TransactionClient | Db) =>
      tx.job.updateManyAndReturn({ where, data, select: { tenantId: true } }).then((rows) => rows[0]);
    const won = opts.alsoWrite
      ? await this.db.$transaction(async (tx) => {
          const row = await flip(tx);
          if (row) await opts.alsoWrite!(tx);
          return row;
        })
      : await flip(this.db);
    if (!won) return null;
    await this.events.finished({ jobId, tenantId: won.tenantId, state: outcome.state, finishedAt, error });
    return finishedAt;
  }
}
