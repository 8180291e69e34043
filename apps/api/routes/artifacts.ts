// GET /v1/jobs/:id/artifacts/:name — the compressed model, its external data, report.json; single byte ranges.
// Bytes are served only once they match the sha256 recorded when the worker wrote them (Storage.readVerified): a
// corrupted file is a 500 problem (logged), never a download.
import { Type } from 'typebox';
import type { FastifyInstance } from 'fastify';
import { StorageIntegrityError } from '../../../packages/platform/storage/storage.js';
import { ApiError } from '../errors.js';
import { problems } from '../schemas/common.js';

const CONTENT_TYPES: Record<string, string> = {
  'report.json': 'application/json',
};

/** Parses one `bytes=` range against `size`; null = ignore the header (serve the whole file), 'unsatisfiable' = 416. */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | null | 'unsatisfiable' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null; // multi-range or malformed: RFC 9110 lets us ignore it
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return null;
  }
  if (start >= size || size === 0) return 'unsatisfiable';
  return { start, end };
}

export default async function artifactRoutes(app: FastifyInstance) {
  const { deps } = app;

  app.get(
    '/v1/jobs/:id/artifacts/:name',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Download an artifact (Range supported)',
        params: Type.Object({
          id: Type.String({ format: 'uuid' }),
          name: Type.String({ pattern: '^[A-Za-z0-9._-]{1,200}$' }),
        }),
        headers: Type.Object({ range: Type.Optional(Type.String()) }),
        response: {
          200: {
            description: 'The file',
            content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
          },
          206: {
            description: 'A byte range of the file',
            content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
          },
          ...problems(404, 416, 500),
        },
      },
    },
    async (request, reply) => {
      const { id, name } = request.params as { id: string; name: string };
      const job = await deps.db.job.findFirst({ where: { id, tenantId: request.tenantId }, select: { id: true } });
      if (!job) throw new ApiError('job-not-found');
      const artifact = await deps.db.artifact.findUnique({ where: { jobId_name: { jobId: id, name } } });
      if (!artifact) throw new ApiError('artifact-not-found', `job ${id} has no artifact ${name}`);
      const size = Number(artifact.sizeBytes);
      const range = parseRange(request.headers.range, size);
      if (range === 'unsatisfiable') {
        throw new ApiError('range-not-satisfiable', undefined, undefined, { 'content-range': `bytes */${size}` });
      }
      let stream;
      try {
        stream = await deps.storage.readVerified(
          artifact.storageKey,
          { sha256: artifact.sha256, sizeBytes: size },
          range ?? undefined,
        );
      } catch (e) {
        if (!(e instanceof StorageIntegrityError)) throw e;
        request.log.error({ err: e, jobId: id, artifact: name }, 'stored artifact does not match its sha256');
        throw new ApiError('artifact-corrupt');
      }
      reply
        .header('accept-ranges', 'bytes')
        .header('etag', `"${artifact.sha256}"`)
        .header('content-disposition', `attachment; filename="${name}"`)
        .type(CONTENT_TYPES[name] ?? 'application/octet-stream');
      if (range) {
        return reply
          .status(206)
          .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
          .header('content-length', range.end - range.start + 1)
          .send(stream);
      }
      return reply.status(200).header('content-length', size).send(stream);
    },
  );
}
