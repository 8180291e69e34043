// /v1/models: upload (multipart or raw octet-stream), read, list, delete.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ApiError } from '../errors.js';
import { IdParams, ListQuery, NoContent, problems } from '../schemas/common.js';
import { ModelPage, ModelRef, ModelUploadQuery, modelUploadBody } from '../schemas/models.js';
import { createModel, deleteModel, getModel, listModels } from '../services/models.js';
import { receiveUpload, requireUploadContentType } from '../upload.js';

const modelRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { deps } = app;

  app.post(
    '/v1/models',
    {
      schema: {
        tags: ['models'],
        summary: 'Upload an ONNX model',
        querystring: ModelUploadQuery,
        response: { 201: ModelRef, ...problems(400, 413, 415, 422, 507) },
      },
      config: { openapiRequestBody: modelUploadBody },
      onRequest: [requireUploadContentType],
    },
    async (request, reply) => {
      const upload = await receiveUpload(request, {
        stagingDir: deps.storage.stagingDir,
        maxBytes: deps.config.maxUploadBytes,
        mainName: 'model.onnx',
        allowExtra: true,
        onBytes: (n) => app.metrics.uploadBytes.inc({ kind: 'model' }, n),
        rawName: request.query.name,
      });
      try {
        const given = upload.fields.name || request.query.name || upload.main.clientName;
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
        response: { 200: ModelRef, ...problems(404) },
      },
    },
    async (request) => {
      const { id } = request.params;
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
        querystring: ListQuery,
        response: { 200: ModelPage, ...problems(400) },
      },
    },
    async (request) => {
      const q = request.query;
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
        response: { 204: NoContent, ...problems(404, 409) },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const out = await deleteModel(deps, request.tenantId, id);
      if (!out.ok) throw new ApiError(out.code, 'message' in out ? out.message : undefined);
      return reply.status(204).send(null);
    },
  );
};

export default modelRoutes;
