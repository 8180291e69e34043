// ioredis connections for BullMQ. Workers need maxRetriesPerRequest: null (blocking commands must wait, not fail).
// Every connection (and every BullMQ Queue/Worker, which re-emit their connection's errors) gets an 'error' listener:
// without one, ioredis prints "Unhandled error event" and BullMQ console.errors on every reconnect attempt (a few per
// second while Redis is down). The listener logs the first error at once, then at most one line per interval with
// the count in between, and never the URL's credentials.
import { Redis } from 'ioredis';

/** Where connection errors go: one line per call. @defaultValue console.warn */
export type RedisLogSink = (line: string) => void;

export interface RedisErrorLogOptions {
  /** @defaultValue console.warn */
  sink?: RedisLogSink;
  /** At most one error line per this many ms (the others are counted). @defaultValue 30000 */
  intervalMs?: number;
}

/** host:port/db of a Redis URL: what a log line may say about where a connection goes (no user, no password). */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return '<invalid redis url>';
  }
}

/** Removes the URL's password (and user) wherever an error message repeats it. */
function scrub(text: string, url: string): string {
  let out = text;
  try {
    const u = new URL(url);
    for (const secret of [u.password, decodeURIComponent(u.password), u.username, decodeURIComponent(u.username)]) {
      if (secret.length >= 3) out = out.split(secret).join('***');
    }
  } catch {
    // not a URL: nothing to scrub by
  }
  return out;
}

/**
 * A rate-limited error logger: the first error is written at once, later ones at most once per `intervalMs` with the
 * number suppressed since the last line. `recovered()` writes one line when errors had been seen.
 */
export function rateLimitedErrorLog(
  label: string,
  opts: RedisErrorLogOptions & { url?: string } = {},
): { error(err: unknown): void; recovered(): void } {
  const sink = opts.sink ?? ((line: string) => console.warn(line));
  const intervalMs = opts.intervalMs ?? 30_000;
  let lastAt = -Infinity;
  let suppressed = 0;
  let sinceRecovery = 0;
  const clean = (s: string) => (opts.url ? scrub(s, opts.url) : s);
  return {
    error(err) {
      sinceRecovery++;
      const now = Date.now();
      if (now - lastAt < intervalMs) {
        suppressed++;
        return;
      }
      const more = suppressed ? ` (${suppressed} more since the last line)` : '';
      const message = err instanceof Error ? err.message : String(err);
      sink(clean(`${label}: ${message}${more}`));
      lastAt = now;
      suppressed = 0;
    },
    recovered() {
      if (sinceRecovery === 0) return;
      sink(`${label}: ready again after ${sinceRecovery} error${sinceRecovery === 1 ? '' : 's'}`);
      sinceRecovery = 0;
      suppressed = 0;
      lastAt = -Infinity;
    },
  };
}

interface ErrorEmitter {
  on(event: 'error', listener: (err: Error) => void): unknown;
}

/** Attaches a rate-limited 'error' listener (a BullMQ Queue or Worker, or a raw connection). */
export function logErrors(emitter: ErrorEmitter, label: string, opts: RedisErrorLogOptions & { url?: string } = {}) {
  const log = rateLimitedErrorLog(label, opts);
  emitter.on('error', (err) => log.error(err));
  return log;
}

export function createRedis(
  url: string,
  role: 'queue' | 'worker' | 'subscriber',
  opts: RedisErrorLogOptions = {},
): Redis {
  const redis = new Redis(url, {
    maxRetriesPerRequest: role === 'queue' ? 3 : null,
    enableReadyCheck: true,
    connectionName: `onnx-compress-${role}`,
    lazyConnect: false,
  });
  const log = logErrors(redis, `redis ${role} connection to ${redactRedisUrl(url)}`, { ...opts, url });
  redis.on('ready', () => log.recovered());
  return redis;
}
