// Per-tenant quotas: jobs that may be queued or running at once, and bytes stored (models + datasets + artifacts).
// Checked before the work is accepted; a quota of 0 means unlimited.
import type { PrismaClient } from '../../../prisma/generated/client.js';

export interface TenantQuotas {
  /** Queued + running jobs per tenant. 0 = unlimited. @defaultValue 0 */
  maxConcurrentJobs: number;
  /** Stored bytes per tenant. 0 = unlimited. @defaultValue 0 */
  maxStorageBytes: number;
}

export type QuotaVerdict =
  | { ok: true }
  | { ok: false; code: 'concurrent-jobs-quota' | 'storage-quota'; message: string; limit: number; used: number };

export async function activeJobCount(db: PrismaClient, tenantId: string): Promise<number> {
  return db.job.count({ where: { tenantId, state: { in: ['queued', 'running'] } } });
}

export async function storedBytes(db: PrismaClient, tenantId: string): Promise<number> {
  const [m, d, a] = await Promise.all([
    db.model.aggregate({ where: { tenantId }, _sum: { sizeBytes: true } }),
    db.dataset.aggregate({ where: { tenantId }, _sum: { sizeBytes: true } }),
    db.artifact.aggregate({ where: { tenantId }, _sum: { sizeBytes: true } }),
  ]);
  return Number((m._sum.sizeBytes ?? 0n) + (d._sum.sizeBytes ?? 0n) + (a._sum.sizeBytes ?? 0n));
}

/** May this tenant start one more job? */
export async function checkJobQuota(db: PrismaClient, tenantId: string, q: TenantQuotas): Promise<QuotaVerdict> {
  if (q.maxConcurrentJobs <= 0) return { ok: true };
  const used = await activeJobCount(db, tenantId);
  if (used < q.maxConcurrentJobs) return { ok: true };
  return {
    ok: false,
    code: 'concurrent-jobs-quota',
    message: `tenant has ${used} queued or running jobs; the limit is ${q.maxConcurrentJobs}`,
    limit: q.maxConcurrentJobs,
    used,
  };
}

/** May this tenant store `incomingBytes` more (0 when the size is not known up front: then only "already full")? */
export async function checkStorageQuota(
  db: PrismaClient,
  tenantId: string,
  incomingBytes: number,
  q: TenantQuotas,
): Promise<QuotaVerdict> {
  if (q.maxStorageBytes <= 0) return { ok: true };
  const used = await storedBytes(db, tenantId);
  if (used + incomingBytes <= q.maxStorageBytes && used < q.maxStorageBytes) return { ok: true };
  return {
    ok: false,
    code: 'storage-quota',
    message: `tenant stores ${used} bytes; adding ${incomingBytes} would pass the limit of ${q.maxStorageBytes}`,
    limit: q.maxStorageBytes,
    used,
  };
}
