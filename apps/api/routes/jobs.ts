// /v1/jobs: submit, read, list, cancel, delete, per-layer metrics.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { parseRecipe, RecipeError } from '../../../packages/engine/index.js';
import { ApiError, type ProblemIssue } from '../errors.js';
import { IdParams, NoContent, problems } from '../schemas/common.js';
import { JobListQuery, JobPage, JobRef, LayerList, SubmitBody, SubmitHeaders } from '../schemas/jobs.js';
import { cancelJob, deleteJob, getJob, jobLayers, listJobs, submitJob } from '../services/jobs.js';

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

const jobRoutes: FastifyPluginAsyncTypebox = async (app) => {
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
        response: { 202: JobRef, 200: JobRef, ...problems(400, 404, 422) },
      },
    },
    async (request, reply) => {
      if (request.validationError) throw submitValidationError(request.validationError, request.body);
      const key = request.headers['idempotency-key'];
      const out = await submitJob(deps, request.tenantId, request.body, key);
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
        const method = out.job.recipe.method;
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
        response: { 200: JobRef, ...problems(404) },
      },
    },
    async (request) => {
      const job = await getJob(deps, request.tenantId, request.params.id);
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
        querystring: JobListQuery,
        response: { 200: JobPage, ...problems(400) },
      },
    },
    async (request) => {
      const q = request.query;
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
        response: { 202: JobRef, ...problems(404, 409) },
      },
    },
    async (request, reply) => {
      const out = await cancelJob(deps, request.tenantId, request.params.id);
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
        response: { 204: NoContent, ...problems(404, 409) },
      },
    },
    async (request, reply) => {
      const out = await deleteJob(deps, request.tenantId, request.params.id);
      if (!out.ok) throw new ApiError(out.code);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/jobs/:id/layers',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Per-layer metrics of a finished job',
        params: IdParams,
        response: { 200: LayerList, ...problems(404) },
      },
    },
    async (request) => {
      const items = await jobLayers(deps, request.tenantId, request.params.id);
      if (!items) throw new ApiError('job-not-found');
      return { items };
    },
  );
};

export default jobRoutes;
