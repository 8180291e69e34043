// The one place a job reaching a final state is announced (worker: succeeded/failed/cancelled; API: cancelled while
// queued). Webhook delivery, SSE and metrics hook in here with registerJobFinishedHook; a hook that throws is
// logged and does not affect the job or the other hooks.
export interface JobFinishedEvent {
  jobId: string;
  tenantId: string;
  state: 'succeeded' | 'failed' | 'cancelled';
  finishedAt: Date;
  /** Present when state is failed. */
  error?: { code: string; message: string };
}

export type JobFinishedHook = (event: JobFinishedEvent) => Promise<void> | void;

const hooks = new Set<JobFinishedHook>();

/** Returns a function that removes the hook. */
export function registerJobFinishedHook(hook: JobFinishedHook): () => void {
  hooks.add(hook);
  return () => hooks.delete(hook);
}

export async function onJobFinished(
  event: JobFinishedEvent,
  log: { error(obj: object, msg: string): void } = console,
): Promise<void> {
  for (const hook of hooks) {
    try {
      await hook(event);
    } catch (e) {
      log.error({ err: e, jobId: event.jobId }, 'job-finished hook failed');
    }
  }
}
