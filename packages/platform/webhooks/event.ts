// The webhook event catalogue and payload shape: `{type, timestamp, data: {jobId, state, metrics, artifacts}}`.

export const JOB_EVENT_TYPES = ['job.succeeded', 'job.failed', 'job.cancelled', 'job.progress'] as const;
export type JobEventType = (typeof JOB_EVENT_TYPES)[number];

/** The job states that end a job, and the event each one sends. */
export const TERMINAL_EVENT_BY_STATE: Record<string, JobEventType> = {
  succeeded: 'job.succeeded',
  failed: 'job.failed',
  cancelled: 'job.cancelled',
};

export interface WebhookArtifact {
  name: string;
  /** Absolute URL of the artifact on this service (needs the API key to download). */
  url: string;
  sha256: string;
}

export interface JobEventPayload {
  type: JobEventType;
  /** ISO 8601 time the event happened (not the attempt time, which is in `webhook-timestamp`). */
  timestamp: string;
  data: {
    jobId: string;
    state: string;
    metrics: Record<string, unknown> | null;
    artifacts: WebhookArtifact[];
    error?: { code: string; message: string } | null;
    progress?: { stage: string; fraction: number; layer?: { index: number; total: number; name: string } };
  };
}

export interface JobSnapshot {
  id: string;
  state: string;
  metrics: Record<string, unknown> | null;
  artifacts: { name: string; sha256: string }[];
  error?: { code: string; message: string } | null;
}

/**
 * Builds the payload for a job that reached a terminal state. `publicBaseUrl` (e.g. https://compress.example.com)
 * makes artifact URLs absolute.
 */
export function buildJobEvent(job: JobSnapshot, publicBaseUrl: string, at: Date = new Date()): JobEventPayload {
  const type = TERMINAL_EVENT_BY_STATE[job.state];
  if (!type) throw new Error(`job ${job.id} is in state "${job.state}", which sends no webhook`);
  const base = publicBaseUrl.replace(/\/+$/, '');
  return {
    type,
    timestamp: at.toISOString(),
    data: {
      jobId: job.id,
      state: job.state,
      metrics: job.metrics,
      artifacts: job.artifacts.map((a) => ({
        name: a.name,
        url: `${base}/v1/jobs/${encodeURIComponent(job.id)}/artifacts/${encodeURIComponent(a.name)}`,
        sha256: a.sha256,
      })),
      ...(job.error ? { error: job.error } : {}),
    },
  };
}
