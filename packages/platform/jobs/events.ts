// What a job's owner (lifecycle.ts) announces when a job reaches a final state, and the emitter it announces it on.
// The emitter is an object each process creates and injects (openPlatform), not a module-level registry: who
// listens is decided where the process is put together (jobs/notify.ts: the live stream and the webhook
// dispatcher), so a process that finishes jobs cannot forget to notify, and tests listen on their own platform.
export type FinalJobState = 'succeeded' | 'failed' | 'cancelled';

export interface JobError {
  code: string;
  message: string;
}

export interface JobFinishedEvent {
  jobId: string;
  tenantId: string;
  state: FinalJobState;
  finishedAt: Date;
  /** Present when state is failed. */
  error?: JobError;
}

export type JobFinishedListener = (event: JobFinishedEvent) => Promise<void> | void;

export interface ErrorLog {
  error(obj: object, msg: string): void;
}

/**
 * Listeners run one after another; one that throws is logged and neither affects the job (already written) nor the
 * listeners after it.
 */
export class JobEvents {
  private readonly listeners = new Set<JobFinishedListener>();

  constructor(private readonly log: ErrorLog = console) {}

  /** Returns the function that removes the listener. */
  onFinished(listener: JobFinishedListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async finished(event: JobFinishedEvent): Promise<void> {
    for (const listener of this.listeners) {
      try {
        await listener(event);
      } catch (err) {
        this.log.error({ err, jobId: event.jobId }, 'job-finished listener failed');
      }
    }
  }
}
