// Processes one compress job (main thread of the worker process) as stages: claim the job (lifecycle.start), fetch
// inputs, run the engine in a worker thread, commit (commit.ts); a failure is sorted into cancelled, failed once
// (bad input) or retried. Every state change goes through the job lifecycle, which announces final states. Each
// attempt writes under its own storage prefix and only the attempt that flips the row is recorded, so a job picked
// up again after its worker died never ends with two sets of artifacts.
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UnrecoverableError, type Job as BullJob } from 'bullmq';
import type { Recipe } from '../../packages/engine/index.js';
import { isInputError, type JobArtifact, type JobProgress, type JobResult } from '../../packages/engine/job.js';
import type { Db } from '../../packages/platform/db/client.js';
import type { JobError } from '../../packages/platform/jobs/events.js';
import type { CompressJobData } from '../../packages/platform/queue/catalogue.js';
import { isOutOfSpace } from '../../packages/platform/storage/out-of-space.js';
import { runInThread } from '../../packages/platform/threads/run-in-thread.js';
import { openAttempt, type Attempt } from './attempt.js';
import { commitFailed, commitSucceeded } from './commit.js';
import type { ProcessorDeps } from './deps.js';
import type { CompressArgs } from './engine.js';
import { downloadInputs } from './files.js';
import { datasetRefs, publicReport, publishReport } from './public-report.js';
import { claimAttemptDir, removeAttempt, removeDeadAttempts } from './scratch.js';

export { layerRow } from './commit.js';

export type { ProcessorDeps } from './deps.js';

type JobRow = NonNullable<Awaited<ReturnType<Db['job']['findUnique']>>>;

const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

const STORAGE_FULL = {
  code: 'storage-full',
  message:
    'not enough disk space to write the job files (worker scratch or artifact storage); resubmit once space is freed',
};

export async function processCompressJob(deps: ProcessorDeps, bullJob: BullJob<CompressJobData>): Promise<string> {
  const { jobId } = bullJob.data;
  const claimed = await claim(deps, jobId);
  if ('skipped' in claimed) return claimed.skipped;
  const { row, attempt } = claimed;
  const a = openAttempt(deps, bullJob, { jobId, tenantId: row.tenantId, attempt });
  logStarted(deps, row, bullJob);
  try {
    const { result, inputs } = await runEngine(deps, row, a);
    const report = publicReport(result.report, datasetRefs(inputs, row, a.inputNames), a.redact);
    if (!(await commitSucceeded(deps, a, await publishReport(result, report))))
      return 'another attempt committed first';
    const executionProvider = report.onnxruntime?.executionProvider;
    const seconds = (Date.now() - a.startedMs) / 1000;
    deps.log.info({ jobId, seconds, engineSeconds: report.seconds, executionProvider }, 'job succeeded');
    return 'succeeded';
  } catch (e) {
    a.stopTimer();
    return await settleFailure(deps, bullJob, a, e);
  } finally {
    deps.running.delete(jobId);
    await removeAttempt(deps.config.workDir, jobId, a.attemptId).catch(() => {});
    // An attempt that ran alongside this one (its worker stalled, then was killed meanwhile) is gone by now too.
    await removeDeadAttempts(deps.config.workDir, jobId, { jobRunning: true }).catch(() => {});
  }
}

/**
 * Starts an attempt (lifecycle: → running, one more attempt) unless the job is gone, already final, or cancelled
 * while it waited (finished here, never started). Returns the row and the attempt's number, or why nothing runs.
 */
async function claim(
  deps: ProcessorDeps,
  jobId: string,
): Promise<{ row: JobRow; attempt: number } | { skipped: string }> {
  const row = await deps.db.job.findUnique({ where: { id: jobId } });
  let skipped = !row ? 'deleted' : FINAL.has(row.state) ? `already ${row.state}` : null;
  if (row && !skipped && row.cancelRequestedAt) {
    if (await deps.jobs.finish(jobId, { state: 'cancelled' })) deps.log.info({ jobId }, 'job cancelled');
    skipped = 'cancelled';
  }
  const attempt = row && !skipped ? await deps.jobs.start(jobId, row.startedAt ?? new Date()) : null;
  if (row && attempt !== null) return { row, attempt };
  // Nothing will run: whatever a killed attempt left in this worker's scratch goes.
  await removeDeadAttempts(deps.config.workDir, jobId, { jobRunning: false }).catch(() => {});
  return { skipped: skipped ?? 'already finished' };
}

/** Scratch folder, inputs, the engine in its thread; the progress timer stops with a last write. */
async function runEngine(deps: ProcessorDeps, row: JobRow, a: Attempt) {
  const { config, log } = deps;
  await claimAttemptDir(a.workDir);
  // A job run again: the folders of earlier attempts whose worker was killed are of no use to anyone now.
  const stale = await removeDeadAttempts(config.workDir, a.jobId, { keep: a.attemptId, jobRunning: true });
  if (stale.length) log.info({ jobId: a.jobId, removed: stale.length }, 'removed scratch folders of dead attempts');
  const outputDir = join(a.workDir, 'out');
  await mkdir(outputDir, { recursive: true });
  await mkdir(join(a.workDir, 'tmp'), { recursive: true });
  const inputs = await downloadInputs(deps.db, deps.storage, row, join(a.workDir, 'in'), outputDir, a.inputNames);
  a.controller.signal.throwIfAborted();
  const result = await runInThread<CompressArgs, JobResult, JobProgress>(
    deps.engineModule,
    'runCompression',
    {
      recipe: row.recipe as unknown as Recipe,
      inputs,
      executionProviders: config.executionProviders,
      tmpDir: join(a.workDir, 'tmp'),
    },
    { signal: a.controller.signal, onProgress: a.report },
  );
  a.stopTimer();
  await a.flush();
  a.controller.signal.throwIfAborted();
  return { result, inputs };
}

/**
 * Sorts a failed attempt: cancelled (aborted), failed once (bad input: BullMQ must not retry), or a transient error
 * that fails the job on its last attempt and otherwise hands it back to the queue. Only while this attempt is the
 * job's latest: a stalled attempt failing after another took the job over leaves the row to that one.
 */
async function settleFailure(deps: ProcessorDeps, bullJob: BullJob<CompressJobData>, a: Attempt, e: unknown) {
  const { jobId, attempt } = a;
  const attempts = bullJob.attemptsMade + 1;
  const fail = async (error: JobError) => {
    if (await deps.jobs.finish(jobId, { state: 'failed', error }, { attempt })) {
      deps.log.warn({ jobId, code: error.code, attempts }, 'job failed');
    }
  };
  if (a.controller.signal.aborted || (e as { name?: string })?.name === 'AbortError') {
    if (await deps.jobs.finish(jobId, { state: 'cancelled' }, { attempt })) deps.log.info({ jobId }, 'job cancelled');
    return 'cancelled';
  }
  if (isInputError(e)) {
    // Engine and ORT messages name files by their worker paths: the client sees its own names instead.
    const error = { code: e.code, message: a.redact(e.message) };
    const files = (e as { artifacts?: JobArtifact[] }).artifacts;
    const stored = files?.length
      ? await commitFailed(deps, a, files, error).catch((err: unknown) => {
          // The failure itself still stands: record it without the files rather than retry the whole job.
          deps.log.warn({ err, jobId }, 'could not store the artifacts of a failed job');
          return undefined;
        })
      : undefined;
    if (stored) deps.log.warn({ jobId, code: e.code, attempts, artifacts: files!.length }, 'job failed');
    else if (stored === undefined) {
      // Scratch goes before the row says failed: a client that sees the failure finds nothing of it left.
      await removeAttempt(deps.config.workDir, jobId, a.attemptId).catch(() => {});
      await fail(error);
    }
    throw new UnrecoverableError(error.message);
  }
  const last = attempts >= (bullJob.opts.attempts ?? 1);
  deps.log.error({ err: e, jobId, attempt: attempts, last }, 'compress job failed');
  if (last)
    await fail(
      isOutOfSpace(e) ? STORAGE_FULL : { code: 'internal', message: 'the job failed unexpectedly; see the worker log' },
    );
  else await deps.jobs.requeue(jobId, attempt);
  throw e;
}

/** The "job started" line: which job, which worker process, which execution providers it will try. */
function logStarted(
  deps: ProcessorDeps,
  row: Pick<JobRow, 'id' | 'tenantId' | 'recipe' | 'queue'>,
  bullJob: BullJob<CompressJobData>,
): void {
  deps.log.info(
    {
      jobId: row.id,
      tenantId: row.tenantId,
      method: (row.recipe as { method?: string } | null)?.method,
      attempt: bullJob.attemptsMade + 1,
      worker: `${hostname()}:${process.pid}`,
      queue: row.queue,
      executionProviders: deps.config.executionProviders,
    },
    'job started',
  );
}
