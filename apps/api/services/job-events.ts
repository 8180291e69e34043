// What the live-events stream reads of a job: its state, progress and outcome, scoped to the tenant.
import type { Db } from '../../../packages/platform/db/client.js';

export interface JobStateView {
  state: string;
  progress: number;
  stage: string | null;
  progressDetail: unknown;
  error: unknown;
  metrics: unknown;
}

/** The job's state as stored; null when it does not exist for this tenant (or was deleted). */
export async function readJobState(db: Db, tenantId: string, jobId: string): Promise<JobStateView | null> {
  return db.job.findFirst({
    where: { id: jobId, tenantId },
    select: { state: true, progress: true, stage: true, progressDetail: true, error: true, metrics: true },
  });
}
