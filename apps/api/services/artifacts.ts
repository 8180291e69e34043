// Artifacts of a job: find one (the job must be the tenant's), and read its bytes only once they match the sha256
// the worker recorded (Storage.readVerified). HTTP (Range, headers) stays in the route.
import type { Readable } from 'node:stream';
import { StorageIntegrityError } from '../../../packages/platform/storage/storage.js';
import type { ServiceDeps } from './deps.js';

export interface StoredArtifact {
  name: string;
  sizeBytes: number;
  sha256: string;
  storageKey: string;
}

export type FindArtifactOutcome =
  | { ok: true; artifact: StoredArtifact }
  | { ok: false; code: 'job-not-found' }
  | { ok: false; code: 'artifact-not-found'; message: string };

export async function findArtifact(
  deps: ServiceDeps,
  tenantId: string,
  jobId: string,
  name: string,
): Promise<FindArtifactOutcome> {
  const job = await deps.db.job.findFirst({ where: { id: jobId, tenantId }, select: { id: true } });
  if (!job) return { ok: false, code: 'job-not-found' };
  const row = await deps.db.artifact.findUnique({ where: { jobId_name: { jobId, name } } });
  if (!row) return { ok: false, code: 'artifact-not-found', message: `job ${jobId} has no artifact ${name}` };
  return {
    ok: true,
    artifact: { name: row.name, sizeBytes: Number(row.sizeBytes), sha256: row.sha256, storageKey: row.storageKey },
  };
}

export type ReadArtifactOutcome =
  { ok: true; stream: Readable } | { ok: false; code: 'artifact-corrupt'; error: StorageIntegrityError };

/** The artifact's bytes (or the inclusive byte range), verified against its recorded sha256 and size. */
export async function readArtifact(
  deps: ServiceDeps,
  artifact: StoredArtifact,
  range?: { start: number; end: number },
): Promise<ReadArtifactOutcome> {
  try {
    const stream = await deps.storage.readVerified(
      artifact.storageKey,
      { sha256: artifact.sha256, sizeBytes: artifact.sizeBytes },
      range,
    );
    return { ok: true, stream };
  } catch (e) {
    if (!(e instanceof StorageIntegrityError)) throw e;
    return { ok: false, code: 'artifact-corrupt', error: e };
  }
}
