// GET /v1/jobs/:id/artifacts/:name — the compressed model, its external data, report.json; single byte ranges.
// Bytes are served only once they match the sha256 recorded when the worker wrote them (Storage.readVerified): a
// corrupted file is a 500 problem (logged), never a download.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ApiError } from '../errors.js';
import { ArtifactFile, ArtifactHeaders, ArtifactParams, ArtifactRange } from '../schemas/artifacts.js';
import { problems } from '../schemas/common.js';
import { findArtifact, readArtifact } from '../services/artifacts.js';

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

const artifactRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { deps } = app;

  app.get(
    '/v1/jobs/:id/artifacts/:name',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Download an artifact (Range supported)',
        params: ArtifactParams,
        headers: ArtifactHeaders,
        response: { 200: ArtifactFile, 206: ArtifactRange, ...problems(404, 416, 500) },
      },
    },
    async (request, reply) => {
      const { id, name } = request.params;
      const found = await findArtifact(deps, request.tenantId, id, name);
      if (!found.ok) throw new ApiError(found.code, 'message' in found ? found.message : undefined);
      const { artifact } = found;
      const size = artifact.sizeBytes;
      const range = parseRange(request.headers.range, size);
      if (range === 'unsatisfiable') {
        throw new ApiError('range-not-satisfiable', undefined, undefined, { 'content-range': `bytes */${size}` });
      }
      const read = await readArtifact(deps, artifact, range ?? undefined);
      if (!read.ok) {
        request.log.error({ err: read.error, jobId: id, artifact: name }, 'stored artifact does not match its sha256');
        throw new ApiError(read.code);
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
          .send(read.stream);
      }
      return reply.status(200).header('content-length', size).send(read.stream);
    },
  );
};

export default artifactRoutes;
