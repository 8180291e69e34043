// GET /v1/jobs/:id/artifacts/:name shapes: the file's name, an optional Range, the bytes (whole or a range).
import { Type } from 'typebox';

export const ArtifactParams = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String({ pattern: '^[A-Za-z0-9._-]{1,200}$' }),
});

export const ArtifactHeaders = Type.Object({ range: Type.Optional(Type.String()) });

const binary = (description: string) => ({
  description,
  content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
});

export const ArtifactFile = binary('The file');
export const ArtifactRange = binary('A byte range of the file');
