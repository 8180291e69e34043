// Datasets (calibration / evaluation tensors): upload with a header summary, read, list, delete.
import { randomUUID } from 'node:crypto';
import type { Prisma } from '../../../prisma/generated/client.js';
import { paginate, type Page, type ServiceDeps } from './deps.js';
import { inspectDataset } from './inspect-client.js';
import type { DatasetFormat, TensorSummary } from '../../../packages/engine/index.js';
import type { StagedUpload } from '../upload.js';
import type { Dataset } from '../schemas/datasets.js';

export const datasetPrefix = (tenantId: string, id: string) => `tenants/${tenantId}/datasets/${id}`;

type DatasetRow = Prisma.DatasetGetPayload<object>;

export function toDataset(d: DatasetRow): Dataset {
  return {
    id: d.id,
    name: d.name,
    format: d.format as DatasetFormat, // written only from the inspection's format
    sha256: d.sha256,
    sizeBytes: Number(d.sizeBytes),
    tensors: d.tensors as unknown as TensorSummary[],
    createdAt: d.createdAt.toISOString(),
  };
}

export type CreateDatasetOutcome =
  { ok: true; dataset: Dataset } | { ok: false; code: 'invalid-dataset'; message: string };

export async function createDataset(
  deps: ServiceDeps,
  tenantId: string,
  upload: StagedUpload,
  name: string,
): Promise<CreateDatasetOutcome> {
  const inspected = await inspectDataset(upload.main.path, upload.main.sizeBytes, name);
  if (!inspected.ok) return { ok: false, code: 'invalid-dataset', message: `${inspected.code}: ${inspected.message}` };
  const id = randomUUID();
  // The engine picks the reader by extension, so the stored name carries the detected format.
  const key = `${datasetPrefix(tenantId, id)}/data.${inspected.value.format}`;
  try {
    await deps.storage.putFile(key, upload.main.path);
    const row = await deps.db.dataset.create({
      data: {
        id,
        tenantId,
        name,
        format: inspected.value.format,
        sha256: upload.main.sha256,
        sizeBytes: BigInt(upload.main.sizeBytes),
        storageKey: key,
        tensors: inspected.value.tensors as unknown as Prisma.InputJsonValue,
      },
    });
    return { ok: true, dataset: toDataset(row) };
  } catch (e) {
    await deps.storage.deletePrefix(`${datasetPrefix(tenantId, id)}/`).catch(() => {});
    throw e;
  }
}

export async function getDataset(deps: ServiceDeps, tenantId: string, id: string): Promise<Dataset | null> {
  const row = await deps.db.dataset.findFirst({ where: { id, tenantId } });
  return row ? toDataset(row) : null;
}

export async function listDatasets(
  deps: ServiceDeps,
  tenantId: string,
  q: { limit: number; cursor?: string },
): Promise<Page<Dataset>> {
  return paginate(
    q,
    ({ after, orderBy, take }) =>
      deps.db.dataset.findMany({
        where: { tenantId, ...after },
        orderBy,
        take,
      }),
    toDataset,
  );
}

export async function deleteDataset(
  deps: ServiceDeps,
  tenantId: string,
  id: string,
): Promise<{ ok: true } | { ok: false; code: 'dataset-not-found' }> {
  const row = await deps.db.dataset.findFirst({ where: { id, tenantId } });
  if (!row) return { ok: false, code: 'dataset-not-found' };
  await deps.db.dataset.delete({ where: { id } });
  await deps.storage.deletePrefix(`${datasetPrefix(tenantId, id)}/`);
  return { ok: true };
}
