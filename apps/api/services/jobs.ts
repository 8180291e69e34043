// Jobs: submit (validate recipe, models and datasets; idempotency; enqueue), read, list, cancel, delete, layers.
import { createHash, randomUUID } from 'node:crypto';
import type { Prisma } from '../../../prisma/generated/client.js';
import {
  datasetFitProblems,
  type DatasetFormat,
  minModels,
  missingCalibrationMessage,
  parseRecipe,
  type Recipe,
  RecipeError,
  type RecipeIssue,
  type TensorSummary,
} from '../../../packages/engine/index.js';
import { publishCancel } from '../../../packages/platform/queue/cancel.js';
import type { Device } from '../../../packages/platform/queue/catalogue.js';
import { paginate, type Page, type ServiceDeps } from './deps.js';
import type { ModelInspection } from './inspect.js';
import type { Job, JobLayer, JobListFilter, JobStateName, SubmitJobInput } from '../schemas/jobs.js';

const ACTIVE: JobStateName[] = ['queued', 'running'];

type JobRow = Prisma.JobGetPayload<{ include: { artifacts: true } }>;

export function toJob(j: JobRow): Job {
  const dto: Job = {
    id: j.id,
    state: j.state,
    progress: j.progress,
    stage: j.stage,
    progressDetail: (j.progressDetail as Record<string, unknown> | null) ?? null,
    modelId: j.modelId,
    calibrationDatasetId: j.calibrationDatasetId,
    evalDatasetId: j.evalDatasetId,
    ingredientModelIds: j.ingredientModelIds,
    recipe: j.recipe as Record<string, unknown>,
    queue: j.queue,
    executionProvider: j.executionProvider,
    attempts: j.attempts,
    metrics: (j.metrics as Record<string, unknown> | null) ?? null,
    artifacts: j.artifacts
      .map((a) => ({ name: a.name, sizeBytes: Number(a.sizeBytes), sha256: a.sha256 }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    cancelRequested: j.cancelRequestedAt !== null,
    createdAt: j.createdAt.toISOString(),
  };
  if (j.error) dto.error = j.error as { code: string; message: string };
  if (j.startedAt) dto.startedAt = j.startedAt.toISOString();
  if (j.finishedAt) dto.finishedAt = j.finishedAt.toISOString();
  return dto;
}

export type SubmitOutcome =
  | { ok: true; job: Job; replayed: boolean }
  | { ok: false; code: 'recipe-invalid'; issues: RecipeIssue[] }
  | { ok: false; code: 'model-not-found' | 'dataset-not-found' | 'calibration-required'; message: string }
  | { ok: false; code: 'dataset-mismatch'; message: string; issues: RecipeIssue[] }
  | { ok: false; code: 'idempotency-key-reused' };

function requestHash(input: SubmitJobInput): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v as object)
              .sort()
              .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
          )
        : v;
  return createHash('sha256')
    .update(JSON.stringify(canonical(input)))
    .digest('hex');
}

async function chooseDevice(deps: ServiceDeps, recipe: Recipe): Promise<Device> {
  if (recipe.device === 'gpu') return 'gpu';
  if (recipe.device === 'cpu') return 'cpu';
  // auto: a GPU only where one is configured or a GPU worker is alive right now.
  if (deps.config.gpuAvailable) return 'gpu';
  return (await deps.queues.gpuWorkerAlive()) ? 'gpu' : 'cpu';
}

const include = { artifacts: true } as const;

export async function submitJob(
  deps: ServiceDeps,
  tenantId: string,
  input: SubmitJobInput,
  idempotencyKey?: string,
): Promise<SubmitOutcome> {
  const hash = requestHash(input);
  if (idempotencyKey) {
    const existing = await deps.db.job.findFirst({ where: { tenantId, idempotencyKey }, include });
    if (existing) {
      return existing.requestHash === hash
        ? { ok: true, job: toJob(existing), replayed: true }
        : { ok: false, code: 'idempotency-key-reused' };
    }
  }
  let recipe: Recipe;
  try {
    recipe = parseRecipe(input.recipe);
  } catch (e) {
    if (e instanceof RecipeError) return { ok: false, code: 'recipe-invalid', issues: e.issues };
    throw e;
  }
  // Refused now rather than queued to fail: the engine's own code and words.
  const noCalibration = missingCalibrationMessage(recipe, !!input.calibrationDatasetId);
  if (noCalibration) return { ok: false, code: 'calibration-required', message: noCalibration };
  const modelIds = [input.modelId, ...(input.ingredientModelIds ?? [])];
  // How many models a method reads is the method's declaration (soups: 2), asked through the engine's entry.
  const least = minModels(recipe.method);
  if (modelIds.length < least) {
    const more = least - 1 === 1 ? 'one ingredient' : `${least - 1} ingredients`;
    return {
      ok: false,
      code: 'recipe-invalid',
      issues: [{ path: '/ingredientModelIds', message: `a ${recipe.method} needs at least ${more} besides modelId` }],
    };
  }
  // The common submission (a model, no datasets or ingredients) checks the model inside the INSERT itself.
  const needsLookup = modelIds.length > 1 || input.calibrationDatasetId || input.evalDatasetId;
  if (needsLookup) {
    const problem = await checkReferences(deps, tenantId, input, modelIds);
    if (problem) return problem;
  }
  const device = await chooseDevice(deps, recipe);
  let row: JobRow | null;
  try {
    row = await insertJob(deps, tenantId, input, recipe, device, hash, idempotencyKey);
  } catch (e) {
    // Two requests with one Idempotency-Key at once: the loser answers with the winner's job.
    if (isUniqueViolation(e) && idempotencyKey) return submitJob(deps, tenantId, input, idempotencyKey);
    throw e;
  }
  if (!row) return { ok: false, code: 'model-not-found', message: `no model ${input.modelId}` };
  try {
    await deps.queues.enqueue(device, { jobId: row.id, tenantId });
  } catch (e) {
    await deps.db.job.delete({ where: { id: row.id } });
    throw e;
  }
  return { ok: true, job: toJob(row), replayed: false };
}

function isUniqueViolation(e: unknown): boolean {
  const err = e as { code?: string; meta?: { code?: string }; message?: string };
  return (
    err.code === 'P2002' ||
    err.code === '23505' ||
    err.meta?.code === '23505' ||
    /23505|unique constraint/i.test(err.message ?? '')
  );
}

/**
 * One statement: inserts the job only if its model belongs to the tenant (null otherwise). Submission is the API's
 * hot path; through the ORM this was a transaction of several round trips.
 */
async function insertJob(
  deps: ServiceDeps,
  tenantId: string,
  input: SubmitJobInput,
  recipe: Recipe,
  device: Device,
  hash: string,
  idempotencyKey: string | undefined,
): Promise<JobRow | null> {
  const id = randomUUID();
  const rows = await deps.db.$queryRaw<{ created_at: Date }[]>`
    INSERT INTO jobs (id, tenant_id, model_id, calibration_dataset_id, eval_dataset_id, ingredient_model_ids, recipe,
                      queue, idempotency_key, request_hash, webhook_url, webhook_secret)
    SELECT ${id}::uuid, ${tenantId}::uuid, ${input.modelId}::uuid, ${input.calibrationDatasetId ?? null}::uuid,
           ${input.evalDatasetId ?? null}::uuid, ${input.ingredientModelIds ?? []}::uuid[], ${JSON.stringify(recipe)}::jsonb,
           ${device}, ${idempotencyKey ?? null}, ${hash}, ${input.webhook?.url ?? null}, ${input.webhook?.secret ?? null}
    WHERE EXISTS (SELECT 1 FROM models WHERE id = ${input.modelId}::uuid AND tenant_id = ${tenantId}::uuid)
    RETURNING created_at`;
  if (rows.length === 0) return null;
  return {
    id,
    tenantId,
    modelId: input.modelId,
    calibrationDatasetId: input.calibrationDatasetId ?? null,
    evalDatasetId: input.evalDatasetId ?? null,
    ingredientModelIds: input.ingredientModelIds ?? [],
    recipe: recipe as unknown as Prisma.JsonValue,
    queue: device,
    state: 'queued',
    progress: 0,
    stage: null,
    progressDetail: null,
    metrics: null,
    error: null,
    executionProvider: null,
    attempts: 0,
    committedAttempt: null,
    idempotencyKey: idempotencyKey ?? null,
    requestHash: hash,
    webhookUrl: input.webhook?.url ?? null,
    webhookSecret: input.webhook?.secret ?? null,
    cancelRequestedAt: null,
    createdAt: rows[0].created_at,
    startedAt: null,
    finishedAt: null,
    artifacts: [],
  };
}

/** Models, ingredients and datasets exist for the tenant, and the datasets fit the model's inputs. */
async function checkReferences(
  deps: ServiceDeps,
  tenantId: string,
  input: SubmitJobInput,
  modelIds: string[],
): Promise<Extract<SubmitOutcome, { ok: false }> | null> {
  const models = await deps.db.model.findMany({ where: { tenantId, id: { in: modelIds } } });
  const missing = modelIds.filter((id) => !models.some((m) => m.id === id));
  if (missing.length) return { ok: false, code: 'model-not-found', message: `no model ${missing.join(', ')}` };
  const model = models.find((m) => m.id === input.modelId)!;
  // The inspection's inputs are the engine's input specs under another name (shape for dims).
  const specs = (model.inspection as unknown as ModelInspection).inputs.map((i) => ({ ...i, dims: i.shape }));
  for (const [role, datasetId] of [
    ['calibration', input.calibrationDatasetId],
    ['eval', input.evalDatasetId],
  ] as const) {
    if (!datasetId) continue;
    const ds = await deps.db.dataset.findFirst({ where: { tenantId, id: datasetId } });
    if (!ds) return { ok: false, code: 'dataset-not-found', message: `no dataset ${datasetId}` };
    const stored = { format: ds.format as DatasetFormat, tensors: ds.tensors as unknown as TensorSummary[] };
    const problems = datasetFitProblems(stored, specs, ds.name).map((p) => p.message);
    if (problems.length) {
      return {
        ok: false,
        code: 'dataset-mismatch',
        message: `${role} dataset ${datasetId}: ${problems.join('; ')}`,
        issues: problems.map((message) => ({
          path: `/${role === 'eval' ? 'evalDatasetId' : 'calibrationDatasetId'}`,
          message,
        })),
      };
    }
  }
  return null;
}

export async function getJob(deps: ServiceDeps, tenantId: string, id: string): Promise<Job | null> {
  const row = await deps.db.job.findFirst({ where: { id, tenantId }, include });
  return row ? toJob(row) : null;
}

export async function listJobs(
  deps: ServiceDeps,
  tenantId: string,
  q: JobListFilter & { limit: number },
): Promise<Page<Job>> {
  return paginate(
    q,
    ({ after, orderBy, take }) =>
      deps.db.job.findMany({
        where: {
          tenantId,
          ...(q.state ? { state: q.state } : {}),
          ...(q.modelId ? { modelId: q.modelId } : {}),
          ...after,
        },
        orderBy,
        take,
        include,
      }),
    toJob,
  );
}

export type CancelOutcome = { ok: true; job: Job } | { ok: false; code: 'job-not-found' | 'job-not-cancellable' };

/**
 * Cancels a job: a job still waiting in the queue is removed and marked cancelled here; a running one is flagged
 * (cancel_requested_at) and its worker told through the cancel channel — it aborts the engine and marks it.
 */
export async function cancelJob(deps: ServiceDeps, tenantId: string, id: string): Promise<CancelOutcome> {
  const row = await deps.db.job.findFirst({ where: { id, tenantId } });
  if (!row) return { ok: false, code: 'job-not-found' };
  if (!ACTIVE.includes(row.state)) return { ok: false, code: 'job-not-cancellable' };
  await deps.db.job.updateMany({
    where: { id, cancelRequestedAt: null },
    data: { cancelRequestedAt: new Date() },
  });
  if (row.state === 'queued' && (await deps.queues.removeIfWaiting(row.queue as Device, id))) {
    // The lifecycle announces it: the job's SSE streams end and its webhook is queued, with or without a worker here.
    await deps.jobs.finish(id, { state: 'cancelled' }, { from: ['queued'] });
  } else {
    await publishCancel(deps.redis, deps.queues.prefix, id);
  }
  return { ok: true, job: (await getJob(deps, tenantId, id))! };
}

export type DeleteJobOutcome = { ok: true } | { ok: false; code: 'job-not-found' | 'job-active' };

export async function deleteJob(deps: ServiceDeps, tenantId: string, id: string): Promise<DeleteJobOutcome> {
  const row = await deps.db.job.findFirst({ where: { id, tenantId } });
  if (!row) return { ok: false, code: 'job-not-found' };
  if (ACTIVE.includes(row.state)) return { ok: false, code: 'job-active' };
  await deps.db.job.delete({ where: { id } });
  await deps.storage.deletePrefix(`tenants/${tenantId}/jobs/${id}/`);
  return { ok: true };
}

export async function jobLayers(deps: ServiceDeps, tenantId: string, id: string): Promise<JobLayer[] | null> {
  const job = await deps.db.job.findFirst({ where: { id, tenantId }, select: { id: true } });
  if (!job) return null;
  const rows = await deps.db.jobLayerMetric.findMany({ where: { jobId: id }, orderBy: { index: 'asc' } });
  return rows.map(({ id: _id, jobId: _j, tenantId: _t, extra, ...r }) => ({
    ...r,
    extra: extra as Record<string, unknown>,
  }));
}
