// One attempt at a job in this worker process: its scratch folder, its abort controller (the cancel subscriber
// aborts through `deps.running`), the names that replace worker paths in messages, and its progress. Progress is
// kept in memory and flushed to Postgres (and BullMQ, whose events carry it to SSE streams) on a timer; each flush
// also reads the durable cancel flag, so a cancel whose pub/sub message was missed still lands.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Job as BullJob } from 'bullmq';
import type { JobProgress } from '../../packages/engine/job.js';
import type { CompressJobData } from '../../packages/platform/queue/catalogue.js';
import type { Storage } from '../../packages/platform/storage/storage.js';
import type { AttemptRef } from './commit.js';
import type { InputNames } from './files.js';
import type { ProcessorDeps } from './deps.js';
import { redactPaths } from './scratch.js';

export interface Attempt extends AttemptRef {
  workDir: string;
  /** Date.now() when the attempt started. */
  startedMs: number;
  controller: AbortController;
  inputNames: InputNames;
  /** Worker paths in `text` become the names their owners know (model, dataset) or their last component. */
  redact(text: string): string;
  /** What the engine reports; the timer writes it. */
  report(p: JobProgress): void;
  /** Stops the progress timer (again: nothing). */
  stopTimer(): void;
  /** Writes the latest progress now (and reads the cancel flag). */
  flush(): Promise<void>;
}

/** Local folders whose paths must not appear in job errors (the local backend's storage directory). */
function storageRoots(storage: Storage): string[] {
  const dir = (storage as { dir?: unknown }).dir;
  return typeof dir === 'string' ? [dir] : [];
}

export function openAttempt(
  deps: ProcessorDeps,
  bullJob: BullJob<CompressJobData>,
  ref: Omit<AttemptRef, 'attemptId'>,
): Attempt {
  const attemptId = randomUUID();
  const workDir = join(deps.config.workDir, 'jobs', ref.jobId, attemptId);
  const controller = new AbortController();
  deps.running.set(ref.jobId, controller);
  const inputNames: InputNames = new Map();
  const roots = [workDir, deps.config.workDir, ...storageRoots(deps.storage)];
  const redact = (text: string) => redactPaths(text, inputNames, roots, inputNames.values().next().value);

  let latest: JobProgress | undefined;
  let flushed: JobProgress | undefined;
  const flush = async () => {
    const p = latest;
    if (p && p !== flushed) {
      flushed = p;
      // The whole progress (stage, fraction, layer, message) reaches SSE streams through BullMQ's events.
      await bullJob.updateProgress(JSON.parse(JSON.stringify(p)) as object).catch(() => {});
    }
    const r = await deps.db.job.update({
      where: { id: ref.jobId },
      data: p ? { progress: p.fraction, stage: p.stage, progressDetail: JSON.parse(JSON.stringify(p)) } : {},
      select: { cancelRequestedAt: true },
    });
    if (r.cancelRequestedAt && !controller.signal.aborted) controller.abort();
  };
  const timer = setInterval(
    () => void flush().catch((e) => deps.log.warn({ err: e, jobId: ref.jobId }, 'progress write failed')),
    deps.progressFlushMs ?? 500,
  );
  return {
    ...ref,
    attemptId,
    workDir,
    startedMs: Date.now(),
    controller,
    inputNames,
    redact,
    // Progress messages name files by their worker paths (e.g. "loading /…/in/model/model.onnx"): redacted.
    report: (p) => (latest = p.message ? { ...p, message: redact(p.message) } : p),
    stopTimer: () => clearInterval(timer),
    flush,
  };
}
