// /v1/datasets: calibration / evaluation tensors (.npz keyed by input name, .npy, ONNX TensorProto .pb).
import { Type } from 'typebox';
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import { IdParams, Nullable, PageQuery, StringEnum, problems } from '../schemas/common.js';
import { createDataset, deleteDataset, getDataset, listDatasets } from '../services/datasets.js';
import { receiveUpload, requireUploadContentType } from '../upload.js';

export const DatasetSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    name: Type.String(),
    format: StringEnum(['npy', 'npz', 'pb'] as const),
    sha256: Type.String(),
    sizeBytes: Type.Integer(),
    tensors: Type.Array(Type.Object({ name: Type.String(), dtype: Type.String(), shape: Type.Array(Type.Integer()) })),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { $id: 'Dataset', title: 'Dataset' },
);

const uploadBody = {
  description:
    'multipart/form-data with a `file` part, or the raw bytes as application/octet-stream with ?name= (the ' +
    'extension, .npz / .npy / .pb, helps tell the format apart).',
  content: {
    'multipart/form-data': {
      schema: {
        type: 'object',
        properties: {
          file: { type: 'string', format: 'binary' },
          // Swagger UI's try-out pre-fills a field with its example, or else sends the word "string" as the name.
          name: { type: 'string', description: "Dataset name (default: the uploaded file's name)", example: '' },
        },
        required: ['file'],
      },
    },
    'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
  },
};

export default async function datasetRoutes(app: FastifyInstance) {
  const { deps } = app;

  app.post(
    '/v1/datasets',
    {
      schema: {
        tags: ['datasets'],
        summary: 'Upload a calibration or evaluation dataset',
        querystring: Type.Object({ name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) }),
        response: { 201: Type.Ref('Dataset'), ...problems(400, 413, 415, 422, 507) },
      },
      config: { openapiRequestBody: uploadBody },
      onRequest: [requireUploadContentType],
    },
    async (request, reply) => {
      const upload = await receiveUpload(request, {
        stagingDir: deps.storage.stagingDir,
        maxBytes: deps.config.maxUploadBytes,
        mainName: 'data',
        allowExtra: false,
        onBytes: (n) => app.metrics.uploadBytes.inc({ kind: 'dataset' }, n),
      });
      try {
        const given = upload.fields.name || (request.query as { name?: string }).name || upload.main.clientName;
        const out = await createDataset(deps, request.tenantId, upload, (given || 'data').slice(0, 200));
        if (!out.ok) throw new ApiError(out.code, out.message);
        return reply.status(201).header('location', `/v1/datasets/${out.dataset.id}`).send(out.dataset);
      } finally {
        await upload.cleanup();
      }
    },
  );

  app.get(
    '/v1/datasets/:id',
    {
      schema: {
        tags: ['datasets'],
        summary: 'Get a dataset',
        params: IdParams,
        response: { 200: Type.Ref('Dataset'), ...problems(404) },
      },
    },
    async (request) => {
      const ds = await getDataset(deps, request.tenantId, (request.params as { id: string }).id);
      if (!ds) throw new ApiError('dataset-not-found');
      return ds;
    },
  );

  app.get(
    '/v1/datasets',
    {
      schema: {
        tags: ['datasets'],
        summary: 'List datasets, newest first',
        querystring: Type.Object(PageQuery),
        response: {
          200: Type.Object({
            items: Type.Array(Type.Ref('Dataset')),
            nextCursor: Nullable(Type.String()),
          }),
          ...problems(400),
        },
      },
    },
    async (request) => {
      const q = request.query as { limit?: number; cursor?: string };
      const out = await listDatasets(deps, request.tenantId, { limit: q.limit ?? 50, cursor: q.cursor });
      if (!out.ok) throw new ApiError('validation-failed', 'cursor is not valid');
      return { items: out.items, nextCursor: out.nextCursor };
    },
  );

  app.delete(
    '/v1/datasets/:id',
    {
      schema: {
        tags: ['datasets'],
        summary: 'Delete a dataset',
        params: IdParams,
        response: { 204: Type.Null(), ...problems(404) },
      },
    },
    async (request, reply) => {
      const out = await deleteDataset(deps, request.tenantId, (request.params as { id: string }).id);
      if (!out.ok) throw new ApiError(out.code);
      return reply.status(204).send();
    },
  );
}
