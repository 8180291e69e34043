// /v1/datasets: calibration / evaluation tensors (.npz keyed by input name, .npy, ONNX TensorProto .pb).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ApiError } from '../errors.js';
import { IdParams, ListQuery, NoContent, problems } from '../schemas/common.js';
import { DatasetPage, DatasetRef, DatasetUploadQuery, datasetUploadBody } from '../schemas/datasets.js';
import { createDataset, deleteDataset, getDataset, listDatasets } from '../services/datasets.js';
import { receiveUpload, requireUploadContentType } from '../upload.js';

const datasetRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { deps } = app;

  app.post(
    '/v1/datasets',
    {
      schema: {
        tags: ['datasets'],
        summary: 'Upload a calibration or evaluation dataset',
        querystring: DatasetUploadQuery,
        response: { 201: DatasetRef, ...problems(400, 413, 415, 422, 507) },
      },
      config: { openapiRequestBody: datasetUploadBody },
      onRequest: [requireUploadContentType],
    },
    async (request, reply) => {
      const upload = await receiveUpload(request, {
        stagingDir: deps.storage.stagingDir,
        maxBytes: deps.config.maxUploadBytes,
        mainName: 'data',
        allowExtra: false,
        onBytes: (n) => app.metrics.uploadBytes.inc({ kind: 'dataset' }, n),
        rawName: request.query.name,
      });
      try {
        const given = upload.fields.name || request.query.name || upload.main.clientName;
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
        response: { 200: DatasetRef, ...problems(404) },
      },
    },
    async (request) => {
      const ds = await getDataset(deps, request.tenantId, request.params.id);
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
        querystring: ListQuery,
        response: { 200: DatasetPage, ...problems(400) },
      },
    },
    async (request) => {
      const q = request.query;
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
        response: { 204: NoContent, ...problems(404) },
      },
    },
    async (request, reply) => {
      const out = await deleteDataset(deps, request.tenantId, request.params.id);
      if (!out.ok) throw new ApiError(out.code);
      return reply.status(204).send(null);
    },
  );
};

export default datasetRoutes;
