// /v1/models: upload (multipart or raw octet-stream), read, list, delete.
import { Type } from 'typebox';
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import { FreeObject, IdParams, Nullable, PageQuery, problems } from '../schemas/common.js';
import { createModel, deleteModel, getModel, listModels } from '../services/models.js';
import { receiveUpload, requireUploadContentType } from '../upload.js';

const FileSummary = Type.Object({ name: Type.String(), sizeBytes: Type.Integer(), sha256: Type.String() });

export const ModelSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    name: Type.String(),
    sha256: Type.String(),
    sizeBytes: Type.Integer(),
    externalData: Type.Array(FileSummary),
    inspection: FreeObject,
    createdAt: Type.String({ format: 'date-time' }),
  },
  { $id: 'Model', title: 'Model' },
);

const UploadQuery = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Model name (raw uploads).' })),
});

const uploadBody = {
  description:
    'multipart/form-data with a `file` part (the .onnx) and optional `externalData` parts (files the model ' +
    'references by name), or the raw model bytes as application/octet-stream with ?name=.',
  content: {
    'multipart/form-data': {
      schema: {
        type: 'object',
        properties: {
          file: { type: 'string', format: 'binary' },
          externalData: { type: 'array', items: { type: 'string', format: 'binary' } },
          // Swagger UI's try-out pre-fills a field with its example, or else sends the word "string" as the name.
          name: { type: 'string', description: "Model name (default: the uploaded file's name)", example: '' },
        },
        required: ['file'],
      },
    },
    'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
  },
};

export default async function modelRoutes(app: FastifyInstance) {
  const { deps } = app;

  app.post(
    '/v1/models',
    {
      schema: {
        tags: ['models'],
        summary: 'Upload an ONNX model',
        querystring: UploadQuery,
        response: { 201: Type.Ref('Model'), ...problems(400, 413, 415, 422, 507) },
      },
      config: { openapiRequestBody: uploadBody },
      onRequest: [requireUploadContentType],
    },
    async (request, reply) => {
      const upload = await receiveUpload(request, {
        stagingDir: deps.storage.stagingDir,
        maxBytes: deps.config.maxUploadBytes,
        mainName: 'model.onnx',
        allowExtra: true,
        onBytes: (n) => app.metrics.uploadBytes.inc({ kind: 'model' }, n),
      });
      try {
        const given = upload.fields.name || (request.query as { name?: string }).name || upload.main.clientName;
        const name = (given || 'model.onnx').slice(0, 200);
        const out = await createModel(deps, request.tenantId, upload, name);
        if (!out.ok) throw new ApiError(out.code, out.message);
        return reply.status(201).header('location', `/v1/models/${out.model.id}`).send(out.model);
      } finally {
        await upload.cleanup();
      }
    },
  );

  app.get(
    '/v1/models/:id',
    {
      schema: {
        tags: ['models'],
        summary: 'Get a model',
        params: IdParams,
        response: { 200: Type.Ref('Model'), ...problems(404) },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const model = await getModel(deps, request.tenantId, id);
      if (!model) throw new ApiError('model-not-found');
      return model;
    },
  );

  app.get(
    '/v1/models',
    {
      schema: {
        tags: ['models'],
        summary: 'List models, newest first',
        querystring: Type.Object(PageQuery),
        response: {
          200: Type.Object({
            items: Type.Array(Type.Ref('Model')),
            nextCursor: Nullable(Type.String()),
          }),
          ...problems(400),
        },
      },
    },
    async (request) => {
      const q = request.query as { limit?: number; cursor?: string };
      const out = await listModels(deps, request.tenantId, { limit: q.limit ?? 50, cursor: q.cursor });
      if (!out.ok) throw new ApiError('validation-failed', 'cursor is not valid');
      return { items: out.items, nextCursor: out.nextCursor };
    },
  );

  app.delete(
    '/v1/models/:id',
    {
      schema: {
        tags: ['models'],
        summary: 'Delete a model (refused while jobs refer to it)',
        params: IdParams,
        response: { 204: Type.Null(), ...problems(404, 409) },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const out = await deleteModel(deps, request.tenantId, id);
      if (!out.ok) throw new ApiError(out.code, 'message' in out ? out.message : undefined);
      return reply.status(204).send();
    },
  );
}
