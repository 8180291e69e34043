// What leaves the worker about a finished job (metrics on the row, SSE, webhook bodies, report.json) names the
// client's datasets, not the worker's scratch files: the engine records where it read its data
// (`quality.source`, `calibration.source`: a path under WORK_DIR), which means nothing to the client and tells it
// about the worker's disk. Each such source becomes "dataset <name> (<id>)" with `dataset: {id, name}` beside it;
// random calibration data keeps its own description. Progress messages go through the same path redaction.
import { stat, writeFile } from 'node:fs/promises';
import type { JobInputs, JobResult } from '../../packages/engine/job.js';

export interface DatasetRef {
  id: string;
  name: string;
}

/** Local dataset paths of a job → the datasets they were downloaded from. */
export function datasetRefs(
  inputs: JobInputs,
  row: { calibrationDatasetId: string | null; evalDatasetId: string | null },
  names: Map<string, string>,
): Map<string, DatasetRef> {
  const refs = new Map<string, DatasetRef>();
  const add = (path: string | undefined, id: string | null) => {
    if (path && id) refs.set(path, { id, name: names.get(path) ?? id });
  };
  add(inputs.calibrationPath, row.calibrationDatasetId);
  add(inputs.evalPath, row.evalDatasetId);
  return refs;
}

/** A copy of `section` whose `source`, when it is one of the job's dataset paths, names the dataset instead. */
function publicSection(section: unknown, refs: Map<string, DatasetRef>, redact: (s: string) => string): unknown {
  if (!section || typeof section !== 'object') return section;
  const s = section as Record<string, unknown>;
  if (typeof s.source !== 'string') return section;
  const ref = refs.get(s.source);
  if (ref) return { ...s, source: `dataset ${ref.name} (${ref.id})`, dataset: ref };
  return { ...s, source: redact(s.source) };
}

/** The report with client-facing dataset sources (and no worker path in its warnings). */
export function publicReport(
  report: JobResult['report'],
  refs: Map<string, DatasetRef>,
  redact: (s: string) => string,
): JobResult['report'] {
  return {
    ...report,
    quality: publicSection(report.quality, refs, redact) as JobResult['report']['quality'],
    ...(report.calibration ? { calibration: publicSection(report.calibration, refs, redact) } : {}),
    warnings: (report.warnings ?? []).map(redact),
  };
}

/** JSON cannot hold NaN/Infinity: written as null, as the engine writes report.json. */
function jsonNumbers(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? null : value;
}

/**
 * Rewrites the result's report.json (and its artifact size) with the public report, so that the file a client
 * downloads says what GET /v1/jobs/:id says. Returns the result with the public report.
 */
export async function publishReport(result: JobResult, report: JobResult['report']): Promise<JobResult> {
  const artifacts = [];
  for (const a of result.artifacts) {
    if (a.name !== 'report.json') {
      artifacts.push(a);
      continue;
    }
    await writeFile(a.path, JSON.stringify(report, jsonNumbers, 2));
    artifacts.push({ ...a, sizeBytes: (await stat(a.path)).size });
  }
  return { report, artifacts };
}
