// The retry schedule: delays between attempts, e.g. "5s,5m,30m,2h,5h,10h,10h" (the default: 8 attempts over about
// 28 hours, roughly exponential). WEBHOOK_RETRY_SCHEDULE overrides it; tests use milliseconds. Each delay gets ±jitter
// so many receivers coming back at once are not hit in lockstep.

export const DEFAULT_RETRY_SCHEDULE = '5s,5m,30m,2h,5h,10h,10h';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export class RetryScheduleError extends Error {
  override readonly name = 'RetryScheduleError';
}

/** Parses "100ms,2s,5m,1h" into delays in milliseconds. An empty string means no retries. */
export function parseRetrySchedule(spec: string): number[] {
  const trimmed = spec.trim();
  if (trimmed === '') return [];
  return trimmed.split(',').map((part) => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/.exec(part);
    if (!m) throw new RetryScheduleError(`retry schedule entry "${part.trim()}" is not like 500ms, 5s, 5m or 2h`);
    const ms = Math.round(Number(m[1]) * UNIT_MS[m[2]]);
    if (ms > 7 * 24 * 3_600_000) throw new RetryScheduleError(`retry delay "${part.trim()}" is over 7 days`);
    return ms;
  });
}

/**
 * Delay before retry number `retry` (1-based: 1 = the delay after the first failed attempt). `jitter` is a fraction:
 * 0.2 spreads the delay uniformly over [0.8·d, 1.2·d]. `random` is injectable for tests.
 */
export function retryDelayMs(schedule: number[], retry: number, jitter: number, random: () => number = Math.random) {
  const base = schedule[Math.min(retry, schedule.length) - 1] ?? 0;
  if (jitter <= 0) return base;
  return Math.max(0, Math.round(base * (1 - jitter + 2 * jitter * random())));
}
