// Recording an attempt's result: its files are uploaded under the attempt's own storage prefix, then the job is
// finished through the lifecycle with the artifact and per-layer rows in the same transaction. Only the attempt that
// flips the row wins; a loser's files are deleted, so a job never ends with two sets of artifacts.
import type { JobArtifact, JobResult, LayerReport } from '../../packages/engine/job.js';
import type { Prisma } from '../../packages/platform/db/client.js';
import type { JobError } from '../../packages/platform/jobs/events.js';
import type { ProcessorDeps } from './deps.js';
import { sha256File } from './files.js';

/** Which job and attempt a commit is for. */
export interface AttemptRef {
  jobId: string;
  tenantId: string;
  /** The attempt's folder/prefix id. */
  attemptId: string;
  /** The row's `attempts` when this attempt started. */
  attempt: number;
}

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
const json = (v: unknown) => JSON.parse(JSON.stringify(v)) as Prisma.InputJsonValue;

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
    extra: json(extra),
  };
}

const attemptPrefix = (a: AttemptRef) => `tenants/${a.tenantId}/jobs/${a.jobId}/attempts/${a.attemptId}`;

/** Uploads an attempt's files under its own storage prefix (none left behind when one upload fails). */
async function uploadArtifacts(deps: ProcessorDeps, a: AttemptRef, artifacts: JobArtifact[]) {
  const prefix = attemptPrefix(a);
  const rows: Prisma.ArtifactCreateManyInput[] = [];
  try {
    for (const f of artifacts) {
      const sha256 = await sha256File(f.path);
      const storageKey = `${prefix}/${f.name}`;
      await deps.storage.putFile(storageKey, f.path);
      rows.push({
        name: f.name,
        sizeBytes: BigInt(f.sizeBytes),
        sha256,
        storageKey,
        jobId: a.jobId,
        tenantId: a.tenantId,
      });
    }
  } catch (e) {
    // E.g. the storage filled up after the first file: no half set of artifacts stays behind.
    await deps.storage.deletePrefix(`${prefix}/`).catch(() => {});
    throw e;
  }
  return rows;
}

/** The loser of a commit race (or a late attempt) deletes what it uploaded. */
async function keepIfWon(deps: ProcessorDeps, a: AttemptRef, finishedAt: Date | null): Promise<Date | null> {
  if (!finishedAt) await deps.storage.deletePrefix(`${attemptPrefix(a)}/`);
  return finishedAt;
}

/**
 * Uploads the attempt's artifacts, then flips the row to succeeded (only if no other attempt did) with artifacts and
 * per-layer metrics. Returns the finish time, or null when another attempt won.
 */
export async function commitSucceeded(deps: ProcessorDeps, a: AttemptRef, result: JobResult): Promise<Date | null> {
  const artifacts = await uploadArtifacts(deps, a, result.artifacts);
  const r = result.report;
  // The report's summary sections (report.json has the same, plus the per-layer rows of job_layer_metrics).
  const { quality, sizes, seconds, warnings, method, selection, latency, calibration, summary, stages } = r;
  const metrics = json({ quality, sizes, seconds, warnings, method, selection, latency, calibration, summary, stages });
  const finishedAt = await deps.jobs.finish(
    a.jobId,
    { state: 'succeeded' },
    {
      from: ['running'],
      where: { committedAttempt: null },
      data: {
        committedAttempt: a.attemptId,
        progress: 1,
        metrics,
        executionProvider: r.onnxruntime?.executionProvider ?? null,
      },
      alsoWrite: async (tx) => {
        await tx.artifact.createMany({ data: artifacts });
        await tx.jobLayerMetric.createMany({ data: r.layers.map((l, i) => layerRow(l, i, a.jobId, a.tenantId)) });
      },
    },
  );
  return keepIfWon(deps, a, finishedAt);
}

/**
 * A deterministic failure that still produced files (a search whose budget no candidate met: report.json and
 * pareto.svg): they are stored and listed with the failed job, in the same transaction that fails it. Returns the
 * finish time, or null when another attempt finished the job first (or took it over).
 */
export async function commitFailed(
  deps: ProcessorDeps,
  a: AttemptRef,
  files: JobArtifact[],
  error: JobError,
): Promise<Date | null> {
  const artifacts = await uploadArtifacts(deps, a, files);
  const finishedAt = await deps.jobs.finish(
    a.jobId,
    { state: 'failed', error },
    {
      attempt: a.attempt,
      where: { committedAttempt: null },
      data: { committedAttempt: a.attemptId },
      alsoWrite: (tx) => tx.artifact.createMany({ data: artifacts }),
    },
  );
  return keepIfWon(deps, a, finishedAt);
}
