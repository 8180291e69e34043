// Processes one compress job (main thread of the worker process): claim the row, fetch inputs, run the engine in a
// worker thread, then commit artifacts + metrics in one transaction. The engine writes each attempt's artifacts
// under its own storage prefix and only the attempt that flips the row to succeeded is recorded, so a job picked up
// again after its worker died never ends with two sets of artifacts.
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UnrecoverableError, type Job as BullJob } from 'bullmq';
import {
  isInputError,
  type JobArtifact,
  type JobProgress,
  type JobResult,
  type LayerReport,
} from '../../packages/engine/job.js';
import type { Recipe } from '../../packages/engine/recipe.js';
import type { Config } from '../../packages/platform/config/config.js';
import { Prisma, type Db } from '../../packages/platform/db/client.js';
import { onJobFinished } from '../../packages/platform/events/job-finished.js';
import type { CompressJobData } from '../../packages/platform/queue/catalogue.js';
import { isOutOfSpace } from '../../packages/platform/storage/out-of-space.js';
import type { Storage } from '../../packages/platform/storage/storage.js';
import { runInThread } from '../../packages/platform/threads/run-in-thread.js';
import type { CompressArgs } from './engine.js';
import { downloadInputs, sha256File, type InputNames } from './files.js';
import { datasetRefs, publicReport, publishReport } from './public-report.js';
import { claimAttemptDir, redactPaths, removeAttempt, removeDeadAttempts } from './scratch.js';

export interface ProcessorDeps {
  config: Config;
  db: Db;
  storage: Storage;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void };
  /** Module whose `runCompression(args, ctx)` runs in the thread. @defaultValue ./engine.ts */
  engineModule: string;
  /** Abort controllers of the jobs this process runs, by job id (the cancel subscriber aborts through it). */
  running: Map<string, AbortController>;
  /** How often progress is written to Postgres. @defaultValue 500 */
  progressFlushMs?: number;
}

const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

/** Columns of job_layer_metrics; anything else in a layer report goes to `extra`. */
const LAYER_COLUMNS = new Set([
  'name',
  'node',
  'op',
  'shape',
  'pattern',
  'skipped',
  'sparsity',
  'patternVerified',
  'relError',
  'relErrorBeforeAdapter',
  'bitsPerWeight',
  'seconds',
]);

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export function layerRow(l: LayerReport, index: number, jobId: string, tenantId: string) {
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(l)) if (!LAYER_COLUMNS.has(k)) extra[k] = v;
  return {
    jobId,
    tenantId,
    index,
    name: String(l.name),
    node: String(l.node ?? ''),
    op: String(l.op ?? ''),
    shape: Array.isArray(l.shape) ? l.shape.map(Number) : [],
    pattern: l.pattern ?? null,
    skipped: l.skipped ?? null,
    sparsity: num(l.sparsity),
    patternVerified: typeof l.patternVerified === 'boolean' ? l.patternVerified : null,
    relError: num(l.relError),
    relErrorBeforeAdapter: num(l.relErrorBeforeAdapter),
    bitsPerWeight: num(l.bitsPerWeight),
    seconds: num(l.seconds) ?? 0,
    extra: JSON.parse(JSON.stringify(extra)) as Prisma.InputJsonValue,
  };
}

function isAbort(e: unknown, signal: AbortSignal): boolean {
  return signal.aborted || (e as { name?: string })?.name === 'AbortError';
}

const STORAGE_FULL = {
  code: 'storage-full',
  message:
    'not enough disk space to write the job files (worker scratch or artifact storage); resubmit once space is freed',
};

export async function processCompressJob(deps: ProcessorDeps, bullJob: BullJob<CompressJobData>): Promise<string> {
  const { db, storage, config, log } = deps;
  const { jobId } = bullJob.data;
  const row = await db.job.findUnique({ where: { id: jobId } });
  // Nothing will run: whatever a killed attempt left in this worker's scratch goes.
  const dropScratch = () => removeDeadAttempts(config.workDir, jobId, { jobRunning: false }).catch(() => {});
  if (!row || FINAL.has(row.state)) await dropScratch();
  if (!row) return 'deleted'; // the row was deleted while queued
  if (FINAL.has(row.state)) return `already ${row.state}`; // e.g. committed just before a worker died
  const finish = async (state: 'failed' | 'cancelled', error?: { code: string; message: string }) => {
    const finishedAt = new Date();
    const done = await db.job.updateMany({
      where: { id: jobId, state: { in: ['queued', 'running'] } },
      data: { state, finishedAt, stage: state, ...(error ? { error } : {}) },
    });
    if (done.count !== 1) return;
    if (state === 'failed') log.warn({ jobId, code: error?.code, attempts: bullJob.attemptsMade + 1 }, 'job failed');
    else log.info({ jobId }, 'job cancelled');
    await onJobFinished({ jobId, tenantId: row.tenantId, state, finishedAt, error }, log);
  };
  if (row.cancelRequestedAt) {
    await finish('cancelled');
    await dropScratch();
    return 'cancelled';
  }

  const attemptId = randomUUID();
  const controller = new AbortController();
  deps.running.set(jobId, controller);
  const workDir = join(config.workDir, 'jobs', jobId, attemptId);
  const outputDir = join(workDir, 'out');
  await db.job.update({
    where: { id: jobId },
    data: {
      state: 'running',
      startedAt: row.startedAt ?? new Date(),
      attempts: { increment: 1 },
      stage: 'download',
      error: Prisma.DbNull,
    },
  });
  const startedMs = Date.now();
  logStarted(deps, row, bullJob);

  // Progress: kept in memory, flushed to Postgres (and BullMQ) on a timer; each flush also reads the durable cancel
  // flag, so a cancel whose pub/sub message was missed still lands.
  // Progress messages name files by their worker paths (e.g. "loading /…/in/model/model.onnx"): redacted.
  const inputNames: InputNames = new Map();
  const roots = [workDir, config.workDir, ...storageRoots(storage)];
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
    const r = await db.job.update({
      where: { id: jobId },
      data: p ? { progress: p.fraction, stage: p.stage, progressDetail: JSON.parse(JSON.stringify(p)) } : {},
      select: { cancelRequestedAt: true },
    });
    if (r.cancelRequestedAt && !controller.signal.aborted) controller.abort();
  };
  const timer = setInterval(
    () => void flush().catch((e) => log.warn({ err: e, jobId }, 'progress write failed')),
    deps.progressFlushMs ?? 500,
  );

  try {
    await claimAttemptDir(workDir);
    // A job run again: the folders of earlier attempts whose worker was killed are of no use to anyone now.
    const stale = await removeDeadAttempts(config.workDir, jobId, { keep: attemptId, jobRunning: true });
    if (stale.length) log.info({ jobId, removed: stale.length }, 'removed scratch folders of dead attempts');
    await mkdir(outputDir, { recursive: true });
    await mkdir(join(workDir, 'tmp'), { recursive: true });
    const inputs = await downloadInputs(db, storage, row, join(workDir, 'in'), outputDir, inputNames);
    controller.signal.throwIfAborted();
    const result = await runInThread<CompressArgs, JobResult, JobProgress>(
      deps.engineModule,
      'runCompression',
      {
        recipe: row.recipe as unknown as Recipe,
        inputs,
        executionProviders: config.executionProviders,
        tmpDir: join(workDir, 'tmp'),
      },
      {
        signal: controller.signal,
        onProgress: (p) => (latest = p.message ? { ...p, message: redact(p.message) } : p),
      },
    );
    clearInterval(timer);
    await flush();
    controller.signal.throwIfAborted();
    const report = publicReport(result.report, datasetRefs(inputs, row, inputNames), redact);
    const committed = await commit(deps, row.tenantId, jobId, attemptId, await publishReport(result, report));
    if (committed) {
      log.info(
        {
          jobId,
          seconds: (Date.now() - startedMs) / 1000,
          engineSeconds: report.seconds,
          executionProvider: report.onnxruntime?.executionProvider,
        },
        'job succeeded',
      );
      await onJobFinished({ jobId, tenantId: row.tenantId, state: 'succeeded', finishedAt: committed }, log);
      return 'succeeded';
    }
    return 'another attempt committed first';
  } catch (e) {
    clearInterval(timer);
    if (isAbort(e, controller.signal)) {
      await finish('cancelled');
      return 'cancelled';
    }
    if (isInputError(e)) {
      // Engine and ORT messages name files by their worker paths: the client sees its own names instead.
      const message = redact(e.message);
      const error = { code: e.code, message };
      const artifacts = (e as { artifacts?: JobArtifact[] }).artifacts;
      const stored = artifacts?.length
        ? await failWithArtifacts(deps, row.tenantId, jobId, attemptId, artifacts, error).catch((err: unknown) => {
            // The failure itself still stands: record it without the files rather than retry the whole job.
            log.warn({ err, jobId }, 'could not store the artifacts of a failed job');
            return undefined;
          })
        : undefined;
      if (stored) {
        log.warn(
          { jobId, code: e.code, attempts: bullJob.attemptsMade + 1, artifacts: artifacts!.length },
          'job failed',
        );
        await onJobFinished({ jobId, tenantId: row.tenantId, state: 'failed', finishedAt: stored, error }, log);
      } else if (stored === undefined) {
        // Scratch goes before the row says failed: a client that sees the failure finds nothing of it left.
        await removeAttempt(config.workDir, jobId, attemptId).catch(() => {});
        await finish('failed', error);
      }
      throw new UnrecoverableError(message);
    }
    const last = bullJob.attemptsMade + 1 >= (bullJob.opts.attempts ?? 1);
    log.error({ err: e, jobId, attempt: bullJob.attemptsMade + 1, last }, 'compress job failed');
    if (last) {
      await finish(
        'failed',
        isOutOfSpace(e)
          ? STORAGE_FULL
          : { code: 'internal', message: 'the job failed unexpectedly; see the worker log' },
      );
    } else {
      await db.job.updateMany({ where: { id: jobId, state: 'running' }, data: { state: 'queued', stage: 'retrying' } });
    }
    throw e;
  } finally {
    deps.running.delete(jobId);
    await removeAttempt(config.workDir, jobId, attemptId).catch(() => {});
    // An attempt that ran alongside this one (its worker stalled, then was killed meanwhile) is gone by now too.
    await removeDeadAttempts(config.workDir, jobId, { jobRunning: true }).catch(() => {});
  }
}

/** The "job started" line: which job, which worker process, which execution providers it will try. */
function logStarted(
  deps: ProcessorDeps,
  row: { id: string; tenantId: string; recipe: unknown; queue: string },
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

/** Local folders whose paths must not appear in job errors (the local backend's storage directory). */
function storageRoots(storage: Storage): string[] {
  const dir = (storage as { dir?: unknown }).dir;
  return typeof dir === 'string' ? [dir] : [];
}

/** Uploads an attempt's files under its own storage prefix (none left behind when one upload fails). */
async function uploadArtifacts(deps: ProcessorDeps, prefix: string, artifacts: JobArtifact[]) {
  const files: { name: string; sizeBytes: number; sha256: string; storageKey: string }[] = [];
  try {
    for (const a of artifacts) {
      const sha256 = await sha256File(a.path);
      const storageKey = `${prefix}/${a.name}`;
      await deps.storage.putFile(storageKey, a.path);
      files.push({ name: a.name, sizeBytes: a.sizeBytes, sha256, storageKey });
    }
  } catch (e) {
    // E.g. the storage filled up after the first file: no half set of artifacts stays behind.
    await deps.storage.deletePrefix(`${prefix}/`).catch(() => {});
    throw e;
  }
  return files;
}

/**
 * A deterministic failure that still produced files (a search whose budget no candidate met: report.json and
 * pareto.svg): they are stored and listed with the failed job, in the same transaction that fails it (only if no
 * other attempt finished it first). Returns the finish time, or null when another attempt won.
 */
async function failWithArtifacts(
  deps: ProcessorDeps,
  tenantId: string,
  jobId: string,
  attemptId: string,
  artifacts: JobArtifact[],
  error: { code: string; message: string },
): Promise<Date | null> {
  const prefix = `tenants/${tenantId}/jobs/${jobId}/attempts/${attemptId}`;
  const files = await uploadArtifacts(deps, prefix, artifacts);
  const finishedAt = new Date();
  const won = await deps.db.$transaction(async (tx) => {
    const flipped = await tx.job.updateMany({
      where: { id: jobId, committedAttempt: null, state: { in: ['queued', 'running'] } },
      data: { state: 'failed', committedAttempt: attemptId, finishedAt, stage: 'failed', error },
    });
    if (flipped.count !== 1) return false;
    await tx.artifact.createMany({
      data: files.map((f) => ({ ...f, jobId, tenantId, sizeBytes: BigInt(f.sizeBytes) })),
    });
    return true;
  });
  if (!won) await deps.storage.deletePrefix(`${prefix}/`);
  return won ? finishedAt : null;
}

/**
 * Uploads the attempt's artifacts under its own prefix, then in one transaction flips the row to succeeded (only if
 * no other attempt did) and records artifacts and per-layer metrics. Returns the finish time, or null when another
 * attempt won (its files are then deleted).
 */
async function commit(
  deps: ProcessorDeps,
  tenantId: string,
  jobId: string,
  attemptId: string,
  result: JobResult,
): Promise<Date | null> {
  const prefix = `tenants/${tenantId}/jobs/${jobId}/attempts/${attemptId}`;
  const files = await uploadArtifacts(deps, prefix, result.artifacts);
  const r = result.report;
  // The report's summary sections (report.json has the same, plus the per-layer rows of job_layer_metrics).
  const metrics = JSON.parse(
    JSON.stringify({
      quality: r.quality,
      sizes: r.sizes,
      seconds: r.seconds,
      warnings: r.warnings,
      method: r.method,
      selection: r.selection,
      latency: r.latency,
      calibration: r.calibration,
      summary: r.summary,
      stages: r.stages,
    }),
  ) as Prisma.InputJsonValue;
  const finishedAt = new Date();
  const won = await deps.db.$transaction(async (tx) => {
    const flipped = await tx.job.updateMany({
      where: { id: jobId, committedAttempt: null, state: 'running' },
      data: {
        state: 'succeeded',
        committedAttempt: attemptId,
        progress: 1,
        stage: 'done',
        finishedAt,
        metrics,
        executionProvider: r.onnxruntime?.executionProvider ?? null,
      },
    });
    if (flipped.count !== 1) return false;
    await tx.artifact.createMany({
      data: files.map((f) => ({ ...f, jobId, tenantId, sizeBytes: BigInt(f.sizeBytes) })),
    });
    await tx.jobLayerMetric.createMany({ data: r.layers.map((l, i) => layerRow(l, i, jobId, tenantId)) });
    return true;
  });
  if (!won) {
    await deps.storage.deletePrefix(`${prefix}/`);
    return null;
  }
  return finishedAt;
}
