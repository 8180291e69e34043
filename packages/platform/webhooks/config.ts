// Webhook settings, read once from the environment and validated (the service's config module can embed this).
import { parseAllowList, type AllowList } from './address-policy.js';
import { DEFAULT_RETRY_SCHEDULE, parseRetrySchedule } from './retry-schedule.js';

export interface WebhookConfig {
  /** Delays between attempts (WEBHOOK_RETRY_SCHEDULE). @defaultValue 5s,5m,30m,2h,5h,10h,10h */
  retryScheduleMs: number[];
  /** ± fraction applied to each delay (WEBHOOK_RETRY_JITTER). @defaultValue 0.2 */
  retryJitter: number;
  /** Hosts and CIDRs exempt from the SSRF policy (WEBHOOK_ALLOW_HOSTS). @defaultValue none */
  allowList: AllowList;
  /** WEBHOOK_CONNECT_TIMEOUT_MS. @defaultValue 5000 */
  connectTimeoutMs: number;
  /** WEBHOOK_RESPONSE_TIMEOUT_MS: request sent → response body read. @defaultValue 15000 */
  responseTimeoutMs: number;
  /** Base URL put in artifact links of payloads (PUBLIC_URL). @defaultValue http://localhost:8080 */
  publicBaseUrl: string;
  /** Deliveries in flight per worker process (WEBHOOK_CONCURRENCY). @defaultValue 10 */
  concurrency: number;
  /** How often the dispatcher looks for finished jobs without a delivery (WEBHOOK_SWEEP_MS). @defaultValue 5000 */
  sweepIntervalMs: number;
}

export class WebhookSettingsError extends Error {
  override readonly name = 'WebhookSettingsError';
}

type Env = Record<string, string | undefined>;

function num(env: Env, key: string, fallback: number, min: number, max: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new WebhookSettingsError(`${key} must be a number in [${min}, ${max}] (got "${raw}")`);
  }
  return n;
}

export function loadWebhookConfig(env: Env = process.env): WebhookConfig {
  let retryScheduleMs: number[];
  let allowList: AllowList;
  try {
    retryScheduleMs = parseRetrySchedule(env.WEBHOOK_RETRY_SCHEDULE ?? DEFAULT_RETRY_SCHEDULE);
    allowList = parseAllowList(env.WEBHOOK_ALLOW_HOSTS);
  } catch (e) {
    throw new WebhookSettingsError(`${(e as Error).message}`);
  }
  const port = env.PORT || '8080';
  return {
    retryScheduleMs,
    retryJitter: num(env, 'WEBHOOK_RETRY_JITTER', 0.2, 0, 1),
    allowList,
    connectTimeoutMs: num(env, 'WEBHOOK_CONNECT_TIMEOUT_MS', 5000, 1, 600_000),
    responseTimeoutMs: num(env, 'WEBHOOK_RESPONSE_TIMEOUT_MS', 15_000, 1, 600_000),
    publicBaseUrl: env.PUBLIC_URL || `http://localhost:${port}`,
    concurrency: num(env, 'WEBHOOK_CONCURRENCY', 10, 1, 1000),
    sweepIntervalMs: num(env, 'WEBHOOK_SWEEP_MS', 5000, 50, 3_600_000),
  };
}
