// What a service needs, passed in one object (no globals, no env reads).
import type { Redis } from 'ioredis';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../../../packages/platform/config/config.js';
import type { Db } from '../../../packages/platform/db/client.js';
import type { JobLifecycle } from '../../../packages/platform/jobs/lifecycle.js';
import type { CompressQueues } from '../../../packages/platform/queue/queues.js';
import type { Storage } from '../../../packages/platform/storage/storage.js';

export interface ServiceDeps {
  config: Config;
  db: Db;
  redis: Redis;
  queues: CompressQueues;
  storage: Storage;
  /** The one writer of job states (a cancelled queued job is finished through it). */
  jobs: JobLifecycle;
  log: FastifyBaseLogger;
}

/** Opaque cursor over (createdAt desc, id desc). */
export function encodeCursor(row: { createdAt: Date; id: string }): string {
  return Buffer.from(`${row.createdAt.toISOString()}|${row.id}`).toString('base64url');
}

export function decodeCursor(cursor: string): { createdAt: Date; id: string } | null {
  const [at, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  const createdAt = new Date(at ?? '');
  if (!id || Number.isNaN(createdAt.getTime()) || !/^[0-9a-f-]{36}$/.test(id)) return null;
  return { createdAt, id };
}

/** Prisma `where` for the page after `cursor` in (createdAt desc, id desc) order. */
export function afterCursor(cursor: { createdAt: Date; id: string } | null) {
  if (!cursor) return {};
  return {
    OR: [{ createdAt: { lt: cursor.createdAt } }, { createdAt: cursor.createdAt, id: { lt: cursor.id } }],
  };
}

export type Page<T> = { ok: true; items: T[]; nextCursor: string | null } | { ok: false; code: 'bad-cursor' };

/**
 * One page in (createdAt desc, id desc) order: `fetch` gets the `where` fragment for the cursor and the ordering
 * arguments, and asks for one row more than the page to know whether another page follows.
 */
export async function paginate<R extends { createdAt: Date; id: string }, T>(
  q: { limit: number; cursor?: string },
  fetch: (args: {
    after: ReturnType<typeof afterCursor>;
    orderBy: { createdAt?: 'desc'; id?: 'desc' }[];
    take: number;
  }) => Promise<R[]>,
  toDto: (row: R) => T,
): Promise<Page<T>> {
  const cursor = q.cursor ? decodeCursor(q.cursor) : null;
  if (q.cursor && !cursor) return { ok: false, code: 'bad-cursor' };
  const rows = await fetch({
    after: afterCursor(cursor),
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: q.limit + 1,
  });
  const page = rows.slice(0, q.limit);
  return {
    ok: true,
    items: page.map(toDto),
    nextCursor: rows.length > q.limit ? encodeCursor(page[page.length - 1]) : null,
  };
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
