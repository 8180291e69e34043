// Auth settings, read once and validated: per-key rate limit and per-tenant quotas.
import type { TenantQuotas } from './quotas.js';

export interface AuthConfig extends TenantQuotas {
  /** Requests per minute per API key on /v1 (RATE_LIMIT_PER_KEY_PER_MINUTE; 0 disables). @defaultValue 600 */
  rateLimitPerKeyPerMinute: number;
  /** Create and print a first key when none exists (BOOTSTRAP_API_KEY=1). @defaultValue false */
  bootstrapFirstKey: boolean;
}

export class AuthConfigError extends Error {
  override readonly name = 'AuthConfigError';
}

type Env = Record<string, string | undefined>;

function int(env: Env, key: string, fallback: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new AuthConfigError(`${key} must be a non-negative integer (got "${raw}")`);
  return n;
}

export function loadAuthConfig(env: Env = process.env): AuthConfig {
  const b = (env.BOOTSTRAP_API_KEY ?? '').toLowerCase();
  if (b && !['1', 'true', 'yes', 'on', '0', 'false', 'no', 'off'].includes(b)) {
    throw new AuthConfigError(`BOOTSTRAP_API_KEY must be true or false (got "${env.BOOTSTRAP_API_KEY}")`);
  }
  return {
    rateLimitPerKeyPerMinute: int(env, 'RATE_LIMIT_PER_KEY_PER_MINUTE', 600),
    maxConcurrentJobs: int(env, 'TENANT_MAX_CONCURRENT_JOBS', 0),
    maxStorageBytes: int(env, 'TENANT_MAX_STORAGE_BYTES', 0),
    bootstrapFirstKey: ['1', 'true', 'yes', 'on'].includes(b),
  };
}
