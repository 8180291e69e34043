// /v1/jobs shapes: the job, the submission, the list, per-layer metrics. The recipe's schema is the engine's (the
// one the CLI checks); the service's types are these schemas' Static types, so the response and its type are one.
import { Type, type Static } from 'typebox';
import { RecipeSchema } from '../../../packages/engine/index.js';
import { FreeObject, Nullable, PageQuery, StringEnum, ref } from './common.js';

export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type JobStateName = (typeof JOB_STATES)[number];

const JobState = StringEnum(JOB_STATES, { description: 'queued → running → succeeded | failed | cancelled' });

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
export type Job = Static<typeof JobSchema>;
/** `{$ref: 'Job'}` in responses (the schema is registered once by app.ts), typed as a Job. */
export const JobRef = ref<Job>('Job');

export const SubmitBody = Type.Object(
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
export type SubmitJobInput = Static<typeof SubmitBody>;

export const SubmitHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
});

export const JobListQuery = Type.Object({
  ...PageQuery,
  state: Type.Optional(JobState),
  modelId: Type.Optional(Type.String({ format: 'uuid' })),
});
export type JobListFilter = Static<typeof JobListQuery>;

export const JobPage = Type.Object({
  items: Type.Array(JobRef),
  nextCursor: Nullable(Type.String()),
});

export const LayerSchema = Type.Object({
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
export type JobLayer = Static<typeof LayerSchema>;

export const LayerList = Type.Object({ items: Type.Array(LayerSchema) });
