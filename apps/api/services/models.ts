// Models: upload (inspect, then commit the files to storage and the row to Postgres), read, list, delete.
import { randomUUID } from 'node:crypto';
import type { Prisma } from '../../../prisma/generated/client.js';
import type { ExternalDataFile } from '../../../packages/platform/db/model-files.js';
import { paginate, type Page, type ServiceDeps } from './deps.js';
import { inspectModel } from './inspect-client.js';
import type { StagedUpload } from '../upload.js';
import type { Model } from '../schemas/models.js';

export const MODEL_FILE = 'model.onnx';
export const modelPrefix = (tenantId: string, id: string) => `tenants/${tenantId}/models/${id}`;

export type { ExternalDataFile };

type ModelRow = Prisma.ModelGetPayload<object>;

export function toModel(m: ModelRow): Model {
  return {
    id: m.id,
    name: m.name,
    sha256: m.sha256,
    sizeBytes: Number(m.sizeBytes),
    externalData: (m.externalData as unknown as ExternalDataFile[]).map(({ name, sizeBytes, sha256 }) => ({
      name,
      sizeBytes,
      sha256,
    })),
    inspection: m.inspection as Record<string, unknown>,
    createdAt: m.createdAt.toISOString(),
  };
}

export type CreateModelOutcome = { ok: true; model: Model } | { ok: false; code: 'invalid-model'; message: string };

export async function createModel(
  deps: ServiceDeps,
  tenantId: string,
  upload: StagedUpload,
  name: string,
): Promise<CreateModelOutcome> {
  const inspected = await inspectModel(upload.main.path);
  if (!inspected.ok) return { ok: false, code: 'invalid-model', message: `${inspected.code}: ${inspected.message}` };
  const referenced = new Set(inspected.value.externalDataFiles);
  const unused = upload.extra.filter((f) => !referenced.has(f.name)).map((f) => f.name);
  if (unused.length) {
    return {
      ok: false,
      code: 'invalid-model',
      message: `externalData files not referenced by the model: ${unused.join(', ')}`,
    };
  }
  const id = randomUUID();
  const prefix = modelPrefix(tenantId, id);
  const external: ExternalDataFile[] = upload.extra.map((f) => ({
    name: f.name,
    sizeBytes: f.sizeBytes,
    sha256: f.sha256,
    storageKey: `${prefix}/${f.name}`,
  }));
  try {
    for (const f of upload.extra) await deps.storage.putFile(`${prefix}/${f.name}`, f.path);
    await deps.storage.putFile(`${prefix}/${MODEL_FILE}`, upload.main.path);
    const row = await deps.db.model.create({
      data: {
        id,
        tenantId,
        name,
        sha256: upload.main.sha256,
        sizeBytes: BigInt(upload.main.sizeBytes),
        storageKey: `${prefix}/${MODEL_FILE}`,
        externalData: external as unknown as Prisma.InputJsonValue,
        inspection: inspected.value as unknown as Prisma.InputJsonValue,
      },
    });
    return { ok: true, model: toModel(row) };
  } catch (e) {
    await deps.storage.deletePrefix(`${prefix}/`).catch(() => {});
    throw e;
  }
}

export async function getModel(deps: ServiceDeps, tenantId: string, id: string): Promise<Model | null> {
  const row = await deps.db.model.findFirst({ where: { id, tenantId } });
  return row ? toModel(row) : null;
}

export async function listModels(
  deps: ServiceDeps,
  tenantId: string,
  q: { limit: number; cursor?: string },
): Promise<Page<Model>> {
  return paginate(
    q,
    ({ after, orderBy, take }) =>
      deps.db.model.findMany({
        where: { tenantId, ...after },
        orderBy,
        take,
      }),
    toModel,
  );
}

export type DeleteModelOutcome =
  { ok: true } | { ok: false; code: 'model-not-found' } | { ok: false; code: 'model-in-use'; message: string };

/** How many of the jobs that hold a model are named in the 409 (the rest are counted). */
const NAMED_JOBS = 10;

export async function deleteModel(deps: ServiceDeps, tenantId: string, id: string): Promise<DeleteModelOutcome> {
  const row = await deps.db.model.findFirst({ where: { id, tenantId } });
  if (!row) return { ok: false, code: 'model-not-found' };
  const where = { OR: [{ modelId: id }, { ingredientModelIds: { has: id } }] };
  const jobs = await deps.db.job.findMany({
    where,
    select: { id: true, state: true },
    orderBy: { createdAt: 'desc' },
    take: NAMED_JOBS,
  });
  if (jobs.length > 0) {
    const total = jobs.length < NAMED_JOBS ? jobs.length : await deps.db.job.count({ where });
    const named = jobs.map((j) => `${j.id} (${j.state})`).join(', ');
    const more = total > jobs.length ? ` and ${total - jobs.length} more` : '';
    return {
      ok: false,
      code: 'model-in-use',
      message: `${total} job${total === 1 ? '' : 's'} refer to this model: ${named}${more}; delete them first (DELETE /v1/jobs/:id)`,
    };
  }
  await deps.db.model.delete({ where: { id } });
  await deps.storage.deletePrefix(`${modelPrefix(tenantId, id)}/`);
  return { ok: true };
}
