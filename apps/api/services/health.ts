// Readiness: Postgres, Redis and storage each answer within a time limit. Only the kind of a failure is reported.
import type { ReadyCheck } from '../schemas/health.js';
import type { ServiceDeps } from './deps.js';

async function probe(fn: () => Promise<unknown>, ms = 2000): Promise<ReadyCheck> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms))),
    ]);
    return { ok: true };
  } catch (e) {
    // Only the kind of failure: connection strings and hostnames stay private.
    return { ok: false, error: (e as Error).name === 'Error' ? 'unreachable' : (e as Error).name };
  } finally {
    clearTimeout(timer);
  }
}

export async function readiness(
  deps: Pick<ServiceDeps, 'db' | 'redis' | 'storage'>,
): Promise<{ ok: boolean; checks: { postgres: ReadyCheck; redis: ReadyCheck; storage: ReadyCheck } }> {
  const [postgres, redis, storage] = await Promise.all([
    probe(() => deps.db.$queryRaw`SELECT 1`),
    probe(() => deps.redis.ping()),
    probe(() => deps.storage.check()),
  ]);
  return { ok: postgres.ok && redis.ok && storage.ok, checks: { postgres, redis, storage } };
}
