// The auth section of the service configuration: per-key rate limit, per-tenant quotas, the first-key bootstrap.
import type { TenantQuotas } from '../auth/quotas.js';
import { bool, nonNegativeInt, type Env } from './parse.js';

export interface AuthConfig extends TenantQuotas {
  /** Requests per minute per API key on /v1 (RATE_LIMIT_PER_KEY_PER_MINUTE; 0 disables). @defaultValue 600 */
  rateLimitPerKeyPerMinute: number;
  /** Create and print a first key when none exists (BOOTSTRAP_API_KEY=1). @defaultValue false */
  bootstrapFirstKey: boolean;
}

export function authSection(env: Env): AuthConfig {
  return {
    rateLimitPerKeyPerMinute: nonNegativeInt(env, 'RATE_LIMIT_PER_KEY_PER_MINUTE', 600),
    maxConcurrentJobs: nonNegativeInt(env, 'TENANT_MAX_CONCURRENT_JOBS', 0),
    maxStorageBytes: nonNegativeInt(env, 'TENANT_MAX_STORAGE_BYTES', 0),
    bootstrapFirstKey: bool(env, 'BOOTSTRAP_API_KEY', false),
  };
}
