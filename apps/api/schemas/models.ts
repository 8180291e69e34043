// /v1/models shapes: the model, its upload (multipart or raw bytes), the list.
import { Type, type Static } from 'typebox';
import { FreeObject, Nullable, ref } from './common.js';

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
export type Model = Static<typeof ModelSchema>;
export const ModelRef = ref<Model>('Model');

export const ModelUploadQuery = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Model name (raw uploads).' })),
});

/** The upload body as OpenAPI shows it (the route reads the stream itself: Fastify validates no body here). */
export const modelUploadBody = {
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

export const ModelPage = Type.Object({
  items: Type.Array(ModelRef),
  nextCursor: Nullable(Type.String()),
});
