// /v1/jobs: submit, read, list, cancel, delete, per-layer metrics.
import { Type } from 'typebox';
import type { FastifyInstance } from 'fastify';
import { parseRecipe, RecipeError, RecipeSchema } from '../../../packages/engine/recipe.js';
import { ApiError, type ProblemIssue } from '../errors.js';
import { FreeObject, IdParams, Nullable, PageQuery, StringEnum, problems } from '../schemas/common.js';
import { cancelJob, deleteJob, getJob, jobLayers, listJobs, submitJob, type SubmitJobInput } from '../services/jobs.js';

const JobState = StringEnum(['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const, {
  description: 'queued → running → succeeded | failed | cancelled',
});

export const JobSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    state: JobState,
    progress: Type.Number({ minimum: 0, maximum: 1 }),
    stage: Nullable(Type.String()),
    progressDetail: Nullable(FreeObject),
    modelId: Type.String({ format: 'uuid' }),
    calibrationDatasetId: Nullable(Type.String()),
    evalDatasetId: Nullable(Type.String()),
    ingredientModelIds: Type.Array(Type.String()),
    recipe: FreeObject,
    queue: Type.String({ description: 'cpu or gpu' }),
    executionProvider: Nullable(Type.String(), { description: 'cuda or cpu, once a worker ran it' }),
    attempts: Type.Integer(),
    metrics: Nullable(FreeObject),
    artifacts: Type.Array(Type.Object({ name: Type.String(), sizeBytes: Type.Integer(), sha256: Type.String() })),
    error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
    cancelRequested: Type.Boolean(),
    createdAt: Type.String({ format: 'date-time' }),
    startedAt: Type.Optional(Type.String({ format: 'date-time' })),
    finishedAt: Type.Optional(Type.String({ format: 'date-time' })),
  },
  { $id: 'Job', title: 'Job' },
);

const SubmitBody = Type.Object(
  {
    modelId: Type.String({ format: 'uuid' }),
    recipe: RecipeSchema,
    calibrationDatasetId: Type.Optional(Type.String({ format: 'uuid' })),
    evalDatasetId: Type.Optional(Type.String({ format: 'uuid' })),
    ingredientModelIds: Type.Optional(Type.Array(Type.String({ format: 'uuid' }), { maxItems: 64 })),
    webhook: Type.Optional(
      Type.Object(
        {
          url: Type.String({ format: 'uri', maxLength: 2048 }),
          secret: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'whsec_… signing secret' })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, title: 'JobRequest' },
);

const SubmitHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
});

const LayerSchema = Type.Object({
  index: Type.Integer(),
  name: Type.String(),
  node: Type.String(),
  op: Type.String(),
  shape: Type.Array(Type.Integer()),
  pattern: Nullable(Type.String()),
  skipped: Nullable(Type.String()),
  sparsity: Nullable(Type.Number()),
  patternVerified: Nullable(Type.Boolean()),
  relError: Nullable(Type.Number()),
  relErrorBeforeAdapter: Nullable(Type.Number()),
  bitsPerWeight: Nullable(Type.Number()),
  seconds: Type.Number(),
  extra: FreeObject,
});

/**
 * A union schema's errors list every branch's complaint; for the recipe, parseRecipe (the one the CLI uses) names
 * the actual problems ("/recipe/patern: unknown field"), so recipe errors are reported through it.
 */
function submitValidationError(error: FastifySchemaValidationErrorLike, body: unknown): ApiError {
  const issues: ProblemIssue[] = [];
  let recipeChecked = false;
  for (const v of error.validation ?? []) {
    const path = `${v.instancePath ?? ''}`;
    if (path === '/recipe' || path.startsWith('/recipe/')) {
      if (recipeChecked) continue;
      recipeChecked = true;
      try {
        parseRecipe((body as { recipe?: unknown } | null)?.recipe);
      } catch (e) {
        if (e instanceof RecipeError) {
          for (const i of e.issues) issues.push({ path: `/recipe${i.path}`, message: i.message });
          continue;
        }
        throw e;
      }
    }
    issues.push({ path, message: v.message ?? 'invalid' });
  }
  if (issues.length === 0) issues.push({ path: '', message: error.message });
  return new ApiError('validation-failed', issues.map((i) => `${i.path || '/'}: ${i.message}`).join('; '), issues);
}

interface FastifySchemaValidationErrorLike {
  message: string;
  validation?: { instancePath?: string; message?: string }[];
}

export default async function jobRoutes(app: FastifyInstance) {
  const { deps } = app;

  app.post(
    '/v1/jobs',
    {
      attachValidation: true,
      schema: {
        tags: ['jobs'],
        summary: 'Submit a compression job',
        description: 'The recipe is checked by the same schema the CLI uses. Idempotency-Key makes retries safe.',
        headers: SubmitHeaders,
        body: SubmitBody,
        response: { 202: Type.Ref('Job'), 200: Type.Ref('Job'), ...problems(400, 404, 422) },
      },
    },
    async (request, reply) => {
      if (request.validationError) throw submitValidationError(request.validationError, request.body);
      const key = (request.headers as { 'idempotency-key'?: string })['idempotency-key'];
      const out = await submitJob(deps, request.tenantId, request.body as SubmitJobInput, key);
      if (!out.ok) {
        switch (out.code) {
          case 'recipe-invalid':
            throw new ApiError(
              'recipe-invalid',
              out.issues.map((i) => `${i.path || '/'}: ${i.message}`).join('; '),
              out.issues,
            );
          case 'dataset-mismatch':
            throw new ApiError('dataset-mismatch', out.message, out.issues);
          case 'idempotency-key-reused':
            throw new ApiError('idempotency-key-reused');
          default:
            throw new ApiError(out.code, out.message);
        }
      }
      if (out.replayed) reply.header('idempotent-replayed', 'true');
      else {
        const { id: jobId, queue, modelId } = out.job;
        const method = (out.job.recipe as { method?: string }).method;
        request.log.info({ jobId, tenantId: request.tenantId, modelId, method, queue }, 'job queued');
      }
      return reply.status(202).header('location', `/v1/jobs/${out.job.id}`).send(out.job);
    },
  );

  app.get(
    '/v1/jobs/:id',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Get a job',
        params: IdParams,
        response: { 200: Type.Ref('Job'), ...problems(404) },
      },
    },
    async (request) => {
      const job = await getJob(deps, request.tenantId, (request.params as { id: string }).id);
      if (!job) throw new ApiError('job-not-found');
      return job;
    },
  );

  app.get(
    '/v1/jobs',
    {
      schema: {
        tags: ['jobs'],
        summary: 'List jobs, newest first',
        querystring: Type.Object({
          ...PageQuery,
          state: Type.Optional(JobState),
          modelId: Type.Optional(Type.String({ format: 'uuid' })),
        }),
        response: {
          200: Type.Object({
            items: Type.Array(Type.Ref('Job')),
            nextCursor: Nullable(Type.String()),
          }),
          ...problems(400),
        },
      },
    },
    async (request) => {
      const q = request.query as { limit?: number; cursor?: string; state?: never; modelId?: string };
      const out = await listJobs(deps, request.tenantId, { ...q, limit: q.limit ?? 50 });
      if (!out.ok) throw new ApiError('validation-failed', 'cursor is not valid');
      return { items: out.items, nextCursor: out.nextCursor };
    },
  );

  app.post(
    '/v1/jobs/:id/cancel',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Cancel a queued or running job',
        description: 'A queued job ends cancelled at once; a running one stops promptly on whichever worker runs it.',
        params: IdParams,
        response: { 202: Type.Ref('Job'), ...problems(404, 409) },
      },
    },
    async (request, reply) => {
      const out = await cancelJob(deps, request.tenantId, (request.params as { id: string }).id);
      if (!out.ok) throw new ApiError(out.code);
      return reply.status(202).send(out.job);
    },
  );

  app.delete(
    '/v1/jobs/:id',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Delete a finished job and its artifacts',
        params: IdParams,
        response: { 204: Type.Null(), ...problems(404, 409) },
      },
    },
    async (request, reply) => {
      const out = await deleteJob(deps, request.tenantId, (request.params as { id: string }).id);
      if (!out.ok) throw new ApiError(out.code);
      return reply.status(204).send();
    },
  );

  app.get(
    '/v1/jobs/:id/layers',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Per-layer metrics of a finished job',
        params: IdParams,
        response: { 200: Type.Object({ items: Type.Array(LayerSchema) }), ...problems(404) },
      },
    },
    async (request) => {
      const items = await jobLayers(deps, request.tenantId, (request.params as { id: string }).id);
      if (!items) throw new ApiError('job-not-found');
      return { items };
    },
  );
}
