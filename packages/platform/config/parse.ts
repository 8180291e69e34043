// The readers every section of the configuration uses: one error type, naming the variable and the value it got.
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export type Env = Record<string, string | undefined>;

/** An integer in [min, max]; unset or empty: `fallback`. */
export function int(env: Env, key: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${key} must be an integer in [${min}, ${max}] (got "${raw}")`);
  }
  return n;
}

/** A count or size where 0 means "no limit" (quotas, rate limits). */
export function nonNegativeInt(env: Env, key: string, fallback: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new ConfigError(`${key} must be a non-negative integer (got "${raw}")`);
  return n;
}

/** A number (fractions allowed) in [min, max]. */
export function num(env: Env, key: string, fallback: number, min: number, max: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new ConfigError(`${key} must be a number in [${min}, ${max}] (got "${raw}")`);
  }
  return n;
}

export function bool(env: Env, key: string, fallback: boolean): boolean {
  const raw = env[key]?.toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(`${key} must be true or false (got "${env[key]}")`);
}

export function list<T extends string>(env: Env, key: string, allowed: readonly T[], fallback: T[]): T[] {
  const raw = env[key];
  if (raw === undefined || raw.trim() === '') return fallback;
  const items = raw.split(',').map((s) => s.trim().toLowerCase());
  for (const item of items) {
    if (!allowed.includes(item as T)) {
      throw new ConfigError(`${key}: unknown value "${item}" (allowed: ${allowed.join(', ')})`);
    }
  }
  return items as T[];
}

export function url(env: Env, key: string, fallback: string, protocols: string[]): string {
  const raw = env[key] || fallback;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${key} is not a valid URL`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(`${key} must use ${protocols.join(' or ')} (got ${parsed.protocol})`);
  }
  return raw;
}
