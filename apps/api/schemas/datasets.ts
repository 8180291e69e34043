// /v1/datasets shapes: the dataset (its tensors are the engine's header summaries), its upload, the list.
import { Type, type Static } from 'typebox';
import { TensorSummarySchema } from '../../../packages/engine/index.js';
import { Nullable, StringEnum, ref } from './common.js';

export const DatasetSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    name: Type.String(),
    format: StringEnum(['npy', 'npz', 'pb'] as const),
    sha256: Type.String(),
    sizeBytes: Type.Integer(),
    tensors: Type.Array(TensorSummarySchema),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { $id: 'Dataset', title: 'Dataset' },
);
export type Dataset = Static<typeof DatasetSchema>;
export const DatasetRef = ref<Dataset>('Dataset');

export const DatasetUploadQuery = Type.Object({ name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) });

/** The upload body as OpenAPI shows it (the route reads the stream itself: Fastify validates no body here). */
export const datasetUploadBody = {
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

export const DatasetPage = Type.Object({
  items: Type.Array(DatasetRef),
  nextCursor: Nullable(Type.String()),
});
