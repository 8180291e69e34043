// Per-API-key request rate limit shared by every API process: a fixed one-minute window counted in Redis
// (INCR + PEXPIRE in one MULTI). Over the limit → the caller answers 429 with Retry-After = seconds to the window's end.
import type { Redis } from 'ioredis';

export type RateVerdict =
  | { ok: true; limit: number; remaining: number; resetMs: number }
  | { ok: false; limit: number; remaining: 0; resetMs: number; retryAfterS: number };

export async function takeToken(
  redis: Redis,
  prefix: string,
  keyId: string,
  limitPerWindow: number,
  windowMs = 60_000,
  now = Date.now(),
): Promise<RateVerdict> {
  const windowStart = Math.floor(now / windowMs) * windowMs;
  const resetMs = windowStart + windowMs - now;
  const key = `${prefix}:ratelimit:${keyId}:${windowStart}`;
  const res = await redis
    .multi()
    .incr(key)
    .pexpire(key, windowMs + 1000)
    .exec();
  const count = Number(res?.[0]?.[1] ?? 0);
  if (count <= limitPerWindow) return { ok: true, limit: limitPerWindow, remaining: limitPerWindow - count, resetMs };
  return {
    ok: false,
    limit: limitPerWindow,
    remaining: 0,
    resetMs,
    retryAfterS: Math.max(1, Math.ceil(resetMs / 1000)),
  };
}
