// Every queued job type in one place: queue names, payload, attempts and backoff. Deterministic failures (bad input)
// are never retried: the worker turns them into BullMQ's UnrecoverableError.
import type { JobsOptions } from 'bullmq';

export type Device = 'cpu' | 'gpu';

/** BullMQ queue per device class; a GPU worker may consume both. */
export const QUEUE_NAMES: Record<Device, string> = { cpu: 'compress-cpu', gpu: 'compress-gpu' };

/** Payload of a compress job; everything else is read from the jobs row, the source of truth. */
export interface CompressJobData {
  jobId: string;
  tenantId: string;
}

/** BullMQ job name (one type per queue today). */
export const COMPRESS_JOB = 'compress';

export function compressJobOptions(jobId: string, attempts: number, backoffMs: number): JobsOptions {
  return {
    // Row id as the BullMQ id: enqueuing twice (a retried POST) adds one job.
    jobId,
    attempts,
    backoff: { type: 'exponential', delay: backoffMs },
    removeOnComplete: { age: 24 * 3600, count: 10_000 },
    removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
  };
}
